"""Each reader on a tiny fake copy of its dataset's real layout, with one bad input each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from fer_data import schema
from fer_data.images import decode_png
from fer_data.ingest import LayoutError, ingest_dataset
from fer_data.readers import ReadOptions
from fer_data.readers.ravdess import parse_ravdess_name

from conftest import corrupt_image, gray_image


def by_path(table: pa.Table) -> dict[str, dict]:
    return {row["source_path"]: row for row in table.to_pylist()}


def reasons(result) -> dict[str, str]:
    return {row["source_path"]: row["reason"] for row in result.rejects.to_pylist()}


def pixel_string(values: np.ndarray) -> str:
    return " ".join(str(v) for v in values.ravel())


def test_fer2013_csv_rows_labels_splits_and_bad_rows(tmp_path):
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(3)]
    lines = ["emotion,pixels,Usage",
             f"1,{pixel_string(faces[0])},Training",
             f"3,{pixel_string(faces[1])},PublicTest",
             f"6,{pixel_string(faces[2])},PrivateTest",
             f"2,{pixel_string(faces[0][:40])},Training",  # 1920 values, not 2304
             f"9,{pixel_string(faces[1])},Training"]  # no such class
    (tmp_path / "fer2013").mkdir()
    (tmp_path / "fer2013" / "fer2013.csv").write_text("\n".join(lines) + "\n")

    result = ingest_dataset(tmp_path, "fer2013")

    assert result.reader == "fer2013_csv"
    assert (result.inputs, result.records.num_rows, result.rejects.num_rows) == (5, 3, 2)
    assert result.accounted
    rows = by_path(result.records)
    assert [rows[f"fer2013.csv:{i}"]["label"] for i in (2, 3, 4)] == ["disgust", "happy",
                                                                        "neutral"]
    assert [rows[f"fer2013.csv:{i}"]["official_split"] for i in (2, 3, 4)] == ["train", "val",
                                                                                "test"]
    assert np.array_equal(decode_png(rows["fer2013.csv:3"]["image"]), faces[1])
    assert reasons(result) == {"fer2013.csv:5": "bad_pixel_count", "fer2013.csv:6": "unknown_label"}
    assert result.records.schema.equals(schema.RAW_IMAGE)


def test_icml_variant_with_space_prefixed_headers_and_ferplus_votes(tmp_path):
    folder = tmp_path / "fer2013"
    folder.mkdir()
    face = np.full((48, 48), 77, np.uint8)
    (folder / "icml_face_data.csv").write_text(
        f"emotion, Usage, pixels\n0,Training,{pixel_string(face)}\n4,PublicTest,"
        f"{pixel_string(face)}\n")
    (folder / "fer2013new.csv").write_text(
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,"
        "unknown,NF\nTraining,fer0000000.png,0,0,0,0,9,1,0,0,0,0\n"
        "PublicTest,fer0000001.png,4,0,0,4,0,0,0,0,2,0\n")

    plain = ingest_dataset(tmp_path, "fer2013")
    plus = ingest_dataset(tmp_path, "fer2013", ReadOptions(ferplus_labels=True))

    assert plain.records.column("label").to_pylist() == ["angry", "sad"]
    votes = json.loads(plain.records.column("attributes")[0].as_py())["ferplus_votes"]
    assert votes["anger"] == 9 and votes["disgust"] == 1
    assert plus.records.column("label").to_pylist() == ["angry"]
    assert reasons(plus) == {"icml_face_data.csv:3": "ferplus_tie"}
    assert plus.accounted and plus.unused_files == []


def test_kaggle_train_test_csv_marks_unlabeled_test_rows(tmp_path):
    folder = tmp_path / "fer2013"
    folder.mkdir()
    face = pixel_string(np.zeros((48, 48), np.uint8) + 5)
    (folder / "train.csv").write_text(f"emotion,pixels\n5,{face}\n")
    (folder / "test.csv").write_text(f"pixels\n{face}\n")

    result = ingest_dataset(tmp_path, "fer2013")

    assert result.records.column("official_split").to_pylist() == ["train"]
    assert result.records.column("label").to_pylist() == ["surprise"]
    assert reasons(result) == {"test.csv:2": "unlabeled"}


def test_fer2013_image_folders_take_split_from_file_names(tmp_path):
    root = tmp_path / "fer2013"
    gray_image(root / "train" / "angry" / "Training_10118481.jpg", 10)
    gray_image(root / "test" / "happy" / "PublicTest_95094.jpg", 20)
    gray_image(root / "test" / "happy" / "PrivateTest_218533.jpg", 30)
    corrupt_image(root / "test" / "sad" / "PrivateTest_1.jpg")

    result = ingest_dataset(tmp_path, "fer2013")

    assert result.reader == "fer2013_folders"
    splits = {r["source_path"]: r["official_split"] for r in result.records.to_pylist()}
    assert splits == {"train/angry/Training_10118481.jpg": "train",
                      "test/happy/PublicTest_95094.jpg": "val",
                      "test/happy/PrivateTest_218533.jpg": "test"}
    assert reasons(result) == {"test/sad/PrivateTest_1.jpg": "corrupt_image"}
    assert result.accounted


def test_face_expression_folders_with_synonyms_and_unknown_class(tmp_path):
    root = tmp_path / "face_expression" / "images"
    gray_image(root / "train" / "Happiness" / "1.jpg", 1)
    gray_image(root / "train" / "disgusted" / "2.png", 2)
    gray_image(root / "validation" / "normal" / "3.jpg", 3)
    gray_image(root / "validation" / "selfies" / "4.jpg", 4)
    (root / "train" / "Thumbs.db").write_bytes(b"\0\0")
    (tmp_path / "face_expression" / "LICENSE.txt").write_text("cc")

    result = ingest_dataset(tmp_path, "face_expression")

    rows = by_path(result.records)
    assert {p: (r["label"], r["original_label"], r["official_split"]) for p, r in rows.items()} == {
        "images/train/Happiness/1.jpg": ("happy", "Happiness", "train"),
        "images/train/disgusted/2.png": ("disgust", "disgusted", "train"),
        "images/validation/normal/3.jpg": ("neutral", "normal", "val"),
    }
    assert reasons(result) == {"images/validation/selfies/4.jpg": "unknown_label"}
    assert result.unused_files == ["LICENSE.txt"]
    assert len(set(result.records.column("image_id").to_pylist())) == 3


def _ckplus_sequence(root: Path, subject: str, seq: str, n: int, code: float | str | None):
    for f in range(1, n + 1):
        gray_image(root / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{f:08d}.png",
                   f * 10, (64, 49))
    if code is not None:
        label = root / "Emotion" / subject / seq / f"{subject}_{seq}_{n:08d}_emotion.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(f"   {code:.7e}\n" if isinstance(code, float) else code)


def test_ckplus_original_layout_peaks_neutral_and_rejects(tmp_path):
    root = tmp_path / "ckplus"
    _ckplus_sequence(root, "S005", "001", 6, 3.0)  # disgust
    _ckplus_sequence(root, "S010", "002", 4, None)  # no Emotion file
    _ckplus_sequence(root, "S011", "001", 4, "garbage")
    gray_image(root / "cohn-kanade-images" / "S012" / "001" / "frame.png", 5, (64, 49))

    result = ingest_dataset(tmp_path, "ckplus", ReadOptions(ckplus_peak_frames=2))

    assert result.reader == "ckplus_original" and result.accounted
    rows = by_path(result.records)
    seq1 = {p.rsplit("/", 1)[1]: r["label"] for p, r in rows.items() if "S005" in p}
    assert seq1 == {"S005_001_00000001.png": "neutral", "S005_001_00000005.png": "disgust",
                    "S005_001_00000006.png": "disgust"}
    assert {r["subject_id"] for r in rows.values()} == {"ckplus:S005", "ckplus:S010",
                                                         "ckplus:S011"}
    why = reasons(result)
    assert sum(1 for r in why.values() if r == "intermediate_frame") == 3 + 1 + 1
    assert sum(1 for r in why.values() if r == "sequence_unlabeled") == 2
    assert sum(1 for r in why.values() if r == "bad_label_file") == 2
    assert why["cohn-kanade-images/S012/001/frame.png"] == "unparsable_name"
    assert result.unused_files == []


def test_ckplus48_export(tmp_path):
    root = tmp_path / "ckplus" / "CK+48"
    gray_image(root / "anger" / "S010_004_00000017.png", 1)
    gray_image(root / "contempt" / "S138_008_00000007.png", 2)
    gray_image(root / "sadness" / "not_a_ck_name.png", 3)

    result = ingest_dataset(tmp_path, "ckplus")

    assert result.reader == "ckplus48"
    rows = by_path(result.records)
    assert rows["CK+48/anger/S010_004_00000017.png"]["subject_id"] == "ckplus:S010"
    assert rows["CK+48/anger/S010_004_00000017.png"]["frame_index"] == 17
    assert rows["CK+48/contempt/S138_008_00000007.png"]["label"] == "contempt"
    assert reasons(result) == {"CK+48/sadness/not_a_ck_name.png": "unparsable_name"}


def test_kdef_names(tmp_path):
    root = tmp_path / "kdef" / "KDEF"
    for name in ("AF01ANS", "BM35DIHL", "AM10SUFR"):
        img = Image.new("RGB", (56, 76), (200, 150, 120))
        (root / name[:4]).mkdir(parents=True, exist_ok=True)
        img.save(root / name[:4] / f"{name}.JPG")
    gray_image(root / "AF01" / "AF01XXS.JPG", 4)

    result = ingest_dataset(tmp_path, "kdef")

    rows = {Path(p).stem: r for p, r in by_path(result.records).items()}
    assert rows["AF01ANS"]["label"] == "angry" and rows["AF01ANS"]["subject_id"] == "kdef:F01"
    assert rows["BM35DIHL"]["label"] == "disgust" and rows["BM35DIHL"]["subject_id"] == "kdef:M35"
    assert json.loads(rows["AM10SUFR"]["attributes"])["pose"] == "full_right"
    assert reasons(result) == {"KDEF/AF01/AF01XXS.JPG": "unparsable_name"}


def test_jaffe_palette_tiff_becomes_true_gray(tmp_path):
    root = tmp_path / "jaffe" / "jaffe"
    root.mkdir(parents=True)
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    Image.fromarray(ramp).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "KA.AN1.39.tiff")
    Image.fromarray(ramp).save(root / "KM.SU2.16.tiff")
    Image.fromarray(ramp).save(root / "KM.XX1.17.tiff")
    (root / "README_FIRST.txt").write_text("terms")

    result = ingest_dataset(tmp_path, "jaffe")

    rows = by_path(result.records)
    palette = decode_png(rows["jaffe/KA.AN1.39.tiff"]["image"])
    assert palette.ndim == 2 and np.abs(palette.astype(int) - ramp).max() <= 4
    assert rows["jaffe/KA.AN1.39.tiff"]["subject_id"] == "jaffe:KA"
    assert rows["jaffe/KM.SU2.16.tiff"]["label"] == "surprise"
    assert reasons(result) == {"jaffe/KM.XX1.17.tiff": "unknown_label"}


def test_ravdess_name_parser():
    attrs = parse_ravdess_name("02-01-07-02-01-01-01")
    assert attrs["emotion"] == "disgust" and attrs["intensity"] == "strong"
    assert attrs["modality"] == "video_only" and attrs["vocal_channel"] == "speech"
    assert attrs["actor"] == 1 and attrs["gender"] == "male"
    assert parse_ravdess_name("01-02-02-01-02-02-24")["gender"] == "female"
    with pytest.raises(ValueError):
        parse_ravdess_name("02-01-07-02-01-01")
    with pytest.raises(LookupError, match="emotion"):
        parse_ravdess_name("02-01-09-02-01-01-01")


def test_missing_dataset_gives_zero_rows_and_where_to_get_it(tmp_path):
    result = ingest_dataset(tmp_path, "kdef")
    assert result.records.num_rows == 0 and result.inputs == 0
    assert "KDEF/AF01/AF01ANS.JPG" in result.note and "kdef.se" in result.note


def test_unknown_layout_and_raw_not_a_directory_are_clear_errors(tmp_path):
    (tmp_path / "jaffe").mkdir()
    (tmp_path / "jaffe" / "notes.docx").write_text("x")
    with pytest.raises(LayoutError, match=r"notes\.docx.*KA\.AN1\.39"):
        ingest_dataset(tmp_path, "jaffe")
    not_dir = tmp_path / "raw.txt"
    not_dir.write_text("x")
    with pytest.raises(LayoutError, match="not a directory"):
        ingest_dataset(not_dir, "jaffe")
