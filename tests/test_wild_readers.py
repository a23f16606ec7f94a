"""RAF-DB, ExpW and AffectNet from fake copies of their original layouts (the demo writers'),
checked against the label files parsed here independently, and every malformed line a
download can hold."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fer_data.datasets import write_demo
from fer_data.demo import DemoSpec
from fer_data.faces import CropOptions, build_face_table
from fer_data.ingest import ingest_dataset

RAFDB = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry",
         7: "neutral"}
EXPW = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
AFFECTNET = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"]


@pytest.fixture
def raw(tmp_path):
    write_demo(tmp_path, DemoSpec(datasets=("rafdb", "expw", "affectnet")))
    return tmp_path


def by_path(result):
    return {r["source_path"]: r for r in result.records.to_pylist()}


def rejects(result):
    return {(r["source_path"], r["reason"]) for r in result.rejects.to_pylist()}


def faces_of(result):
    return build_face_table(result.records.to_batches(64), [], CropOptions()).faces.to_pylist()


def append(path, *lines):
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))


# RAF-DB

def test_rafdb_labels_and_official_splits_from_the_list_file(raw):
    listing = raw / "rafdb/basic/EmoLabel/list_patition_label.txt"
    expected = {f"basic/Image/aligned/{n.removesuffix('.jpg')}_aligned.jpg": (RAFDB[int(c)],
                                                                              n.split("_")[0])
                for n, c in (line.split() for line in listing.read_text().splitlines())}
    result = ingest_dataset(raw, "rafdb")
    records = by_path(result)
    assert {p: (r["label"], r["official_split"]) for p, r in records.items()} == expected
    assert result.accounted and result.unused_files == []
    # the compound set's rows are rejected with their reason, not dropped
    assert {reason for _, reason in rejects(result)} == {"compound_expression"}
    assert len(result.rejects) == 2
    # aligned 100x100 faces pass through unchanged in size (no second crop)
    faces = faces_of(result)
    assert {f["detector"] for f in faces} == {"none"}
    assert all(f["bbox"] == [0.0, 0.0, 100.0, 100.0] for f in faces)
    assert {"gender", "race", "age"} <= set(json.loads(next(iter(records.values()))
                                                      ["attributes"]))


def test_rafdb_photographs_cropped_at_their_box_when_aligned_faces_are_absent(raw):
    basic = raw / "rafdb/basic"
    shutil.rmtree(basic / "Image/aligned")
    result = ingest_dataset(raw, "rafdb")
    assert result.accounted and result.unused_files == []
    faces = faces_of(result)
    assert len(faces) == len(result.records) > 20
    for face in faces:
        stem = face["source_path"].split("/")[-1].removesuffix(".jpg")
        box = [float(v) for v in (basic / f"Annotation/boundingbox/{stem}_boundingbox.txt")
               .read_text().split()]
        assert face["detector"] == "given"
        assert np.allclose(face["bbox"], box, atol=0.01)
        # eyes from the manual landmarks (first two points), in the file's pixels
        lines = (basic / f"Annotation/manual/{stem}_manu_attri.txt").read_text().splitlines()
        eyes = sorted(tuple(float(v) for v in line.split()) for line in lines[:2])
        assert np.allclose(np.reshape(face["landmarks"], (2, 2)), eyes, atol=0.01)


def test_rafdb_malformed_lines_become_rejects_with_reasons(raw):
    # unpacked one folder deeper than the layout says: still found
    inner = raw / "rafdb" / "RAF-DB"
    inner.mkdir()
    for name in ("basic", "compound"):
        (raw / "rafdb" / name).rename(inner / name)
    listing = inner / "basic/EmoLabel/list_patition_label.txt"
    first = listing.read_text().splitlines()[0]
    append(listing, "train_09999.jpg", "train_09998.jpg 8", "train_09997.jpg x",
           "val_00001.jpg 3", first, "train_09996.jpg 3")
    # a broken box file: that photograph goes to the detectors instead
    shutil.rmtree(inner / "basic/Image/aligned")
    stem = first.split()[0].removesuffix(".jpg")
    (inner / f"basic/Annotation/boundingbox/{stem}_boundingbox.txt").write_text("1 2 oops\n")
    result = ingest_dataset(raw, "rafdb")
    assert result.accounted
    reasons = {}
    for path, reason in rejects(result):
        reasons.setdefault(reason, []).append(path)
    assert len(reasons["bad_label_line"]) == 4  # 1 field, label 8, label x, split "val"
    assert len(reasons["repeated_line"]) == 1
    assert reasons["missing_image"] == ["RAF-DB/basic/Image/original/train_09996.jpg"]
    broken = by_path(result)[f"RAF-DB/basic/Image/original/{stem}.jpg"]
    assert broken["given_face"] is None


# ExpW

def expw_lines(raw):
    return [line.split() for line in (raw / "expw/data/label/label.lst").read_text()
            .splitlines()]


def test_expw_one_record_per_labelled_face_cropped_at_its_box(raw):
    lines = expw_lines(raw)
    result = ingest_dataset(raw, "expw")
    assert result.accounted and result.unused_files == []
    assert len(result.records) == len(lines) > len({line[0] for line in lines})  # group photos
    assert len(set(result.records.column("image_id").to_pylist())) == len(lines)
    faces = faces_of(result)
    got = sorted((f["source_path"].split("/")[-1], [round(v) for v in f["bbox"]], f["label"],
                  round(f["det_score"], 2)) for f in faces)
    want = sorted((name, [round(float(v)) for v in (left, top, right, bottom)],
                   EXPW[int(code)], round(float(conf), 2))
                  for name, _, top, left, right, bottom, conf, code in lines)
    assert got == want
    assert all(r["official_split"] is None for r in result.records.to_pylist())
    # the stored image is the face with its context, not the whole photograph
    assert max(result.records.column("width").to_pylist()) < 420


def test_expw_malformed_lines_and_images_unpacked_elsewhere(raw):
    expw = raw / "expw"
    (expw / "data/image/origin").rename(expw / "images_unpacked")  # the user's own folder
    name, face_id, *_ = expw_lines(raw)[0]
    append(expw / "data/label/label.lst",
           f"{name} 7 10 10 50",  # too few fields
           f"{name} 8 ten 10 50 60 90.0 3",  # not a number
           f"{name} 9 10 10 50 60 90.0 7",  # label 7
           f"{name} 10 60 50 40 70 90.0 3",  # right < left
           " ".join(expw_lines(raw)[0]),  # the same face again
           "nowhere.jpg 0 10 10 50 60 90.0 3",  # no such image
           f"{name} 11 5000 5000 5100 5100 90.0 3")  # a box outside the photograph
    result = ingest_dataset(raw, "expw")
    assert result.accounted and result.unused_files == []
    reasons = sorted(reason for _, reason in rejects(result))
    assert reasons == ["bad_box"] + ["bad_label_line"] * 4 + ["missing_image", "repeated_line"]
    assert len(result.records) == len(expw_lines(raw)) - 7


# AffectNet

def affectnet_rows(raw):
    out = {}
    for name, split in (("training.csv", "train"), ("validation.csv", "test")):
        with open(raw / "affectnet/Manually_Annotated_file_lists" / name) as f:
            out.update({r["subDirectory_filePath"]: (r, split) for r in csv.DictReader(f)})
    return out


def test_affectnet_labels_splits_boxes_and_affect_from_the_file_lists(raw):
    rows = affectnet_rows(raw)
    result = ingest_dataset(raw, "affectnet")
    assert result.accounted and result.unused_files == []
    faces = {f["source_path"].removeprefix("Manually_Annotated_Images/"): f
             for f in faces_of(result)}
    expressions = {p: int(r["expression"]) for p, (r, _) in rows.items()}
    assert set(faces) == {p for p, code in expressions.items() if code < 8}
    for path, face in faces.items():
        row, split = rows[path]
        assert face["label"] == AFFECTNET[int(row["expression"])]
        assert face["official_split"] == split
        x, y, w, h = (float(row[k]) for k in ("face_x", "face_y", "face_width", "face_height"))
        assert np.allclose(face["bbox"], [x, y, x + w, y + h], atol=0.01)
        assert face["valence"] == pytest.approx(float(row["valence"]), abs=1e-4)
        assert face["arousal"] == pytest.approx(float(row["arousal"]), abs=1e-4)
    assert {r for _, r in rejects(result)} == {"none", "uncertain", "no_face"}
    assert "contempt" in {f["label"] for f in faces.values()}  # kept; fer7 leaves it out


def test_affectnet_malformed_rows_become_rejects(raw):
    lists = raw / "affectnet/Manually_Annotated_file_lists"
    first = (lists / "training.csv").read_text().splitlines()[1]
    path = first.split(",")[0]
    append(lists / "training.csv", f"{path},1,2,3",  # short row
           f"x/{path},1,2,-5,10,,3,0.1,0.1",  # negative width
           f"y/{path},1,2,5,10,,eleven,0.1,0.1",  # not a number
           f"z/{path},1,2,50,50,,11,0.1,0.1",  # code 11
           first,  # the same image again
           "404/missing.jpg,1,2,50,50,,3,0.1,0.1")
    (lists / "validation.csv").write_text("subDirectory_filePath,face_x,expression\n1/a.jpg,1,2\n")
    result = ingest_dataset(raw, "affectnet")
    assert result.accounted
    reasons = sorted(r for _, r in rejects(result) if r not in ("none", "uncertain", "no_face"))
    assert reasons == ["bad_label_file"] + ["bad_label_line"] * 3 + [
        "missing_image", "repeated_line", "unknown_label"]


def test_affectnet_newer_release_with_npy_annotations(tmp_path):
    rng = np.random.default_rng(0)
    expected = {}
    for folder, split in (("train_set", "train"), ("val_set", "test")):
        (tmp_path / "affectnet" / folder / "images").mkdir(parents=True)
        (tmp_path / "affectnet" / folder / "annotations").mkdir()
        for i, code in enumerate((0, 5, 7, 8)):
            image_id = f"{i + (100 if split == 'test' else 0)}"
            pixels = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "affectnet" / folder / "images" /
                                         f"{image_id}.jpg")
            notes = tmp_path / "affectnet" / folder / "annotations"
            np.save(notes / f"{image_id}_exp.npy", np.array(str(code)))
            np.save(notes / f"{image_id}_val.npy", np.array(0.25 * i))
            np.save(notes / f"{image_id}_aro.npy", np.array(-0.25 * i))
            expected[f"{folder}/images/{image_id}.jpg"] = (code, split, 0.25 * i)
    notes = tmp_path / "affectnet/train_set/annotations"
    (notes / "1_exp.npy").write_bytes(b"not numpy")  # corrupt
    (notes / "2_exp.npy").unlink()  # missing
    result = ingest_dataset(tmp_path, "affectnet")
    assert result.reader == "affectnet_npy" and result.accounted
    assert result.unused_files == []
    records = by_path(result)
    assert rejects(result) == {("train_set/images/1.jpg", "bad_label_file"),
                               ("train_set/images/2.jpg", "unlabeled"),
                               ("train_set/images/3.jpg", "none"),
                               ("val_set/images/103.jpg", "none")}
    for path, record in records.items():
        code, split, valence = expected[path]
        assert (record["label"], record["official_split"]) == (AFFECTNET[code], split)
        assert record["valence"] == pytest.approx(valence)
        assert record["given_face"]["whole_image"]
