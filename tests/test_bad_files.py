"""A bad-file corpus, generated here, planted next to good files in each dataset's original
layout: the partition still ingests, every bad input is a reject with its reason, every good
file comes through exactly as in a clean run, and the counts add up."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from fer_data.datasets import write_demo
from fer_data.demo import DemoSpec
from fer_data.ingest import ingest_dataset


def png_header(side: int) -> bytes:
    """A PNG whose header claims side x side pixels (the pixel data is a stub)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def plant_image(path: Path, kind: str, good: Path) -> None:
    """One bad file of `kind` at `path`, made from the good file `good` where it needs one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("<html>404 Not Found</html>\n")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: max(good.stat().st_size // 3, 40)])
    elif kind == "broken_link":
        path.symlink_to(path.parent / "gone-since-download.jpg")
    elif kind == "bomb":  # PIL's own DecompressionBombError territory
        path.write_bytes(png_header(100_000))
    elif kind == "too_large":  # under PIL's limit, over the pipeline's max_pixels
        path.write_bytes(png_header(7_000))
    else:
        raise ValueError(kind)


# what each planted kind must be rejected as
IMAGE_KINDS = {"zero_byte": "not_an_image", "text": "not_an_image", "truncated": "corrupt_image",
               "broken_link": "unreadable", "bomb": "too_large", "too_large": "too_large"}


def junk(folder: Path) -> None:
    """What real downloads also hold, none of it an input: OS files, AppleDouble twins, an
    empty folder and a folder named like an image."""
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "._KA.AN1.1.tiff").write_bytes(b"\x00\x05\x16\x07")
    (folder / "empty").mkdir()
    (folder / "folder.jpg").mkdir()


def plant(raw: Path, dataset: str) -> dict[str, str]:
    """Bad inputs for one dataset's layout; {source_path: expected reason}."""
    root = raw / dataset
    expected: dict[str, str] = {}
    if dataset == "face_expression":
        folder = root / "images" / "train" / "angry"
        good = next(folder.glob("*.jpg"))
        for kind, reason in IMAGE_KINDS.items():
            plant_image(folder / f"bad_{kind}.jpg", kind, good)
            expected[f"images/train/angry/bad_{kind}.jpg"] = reason
        junk(folder)
        name = os.fsencode(folder) + b"/caf\xe9.jpg"  # a Latin-1 name: not UTF-8
        with open(name, "wb") as f:
            f.write(good.read_bytes())
        expected["images/train/angry/caf\\xe9.jpg"] = "record"
        shutil.copy(good, folder / "copy_of_a_good_file.jpg")
        expected["images/train/angry/copy_of_a_good_file.jpg"] = "record"
    elif dataset == "jaffe":
        folder = root / "jaffe"
        good = next(folder.glob("*.tiff"))
        for i, (kind, reason) in enumerate(IMAGE_KINDS.items()):
            plant_image(folder / f"KA.AN1.{900 + i}.tiff", kind, good)
            expected[f"jaffe/KA.AN1.{900 + i}.tiff"] = reason
        plant_image(folder / "KA.XX1.950.tiff", "truncated", good)
        expected["jaffe/KA.XX1.950.tiff"] = "unknown_label"  # the name decides first
        junk(folder)
    elif dataset == "kdef":
        folder = root / "KDEF" / "BF09"
        good = next((root / "KDEF").glob("*/*.JPG"))
        for kind, code in zip(IMAGE_KINDS, ("AF", "AN", "DI", "HA", "NE", "SA"), strict=True):
            plant_image(folder / f"BF09{code}S.JPG", kind, good)
            expected[f"KDEF/BF09/BF09{code}S.JPG"] = IMAGE_KINDS[kind]
        junk(folder)
    elif dataset == "ckplus":
        images, labels = root / "cohn-kanade-images", root / "Emotion"
        good = sorted(images.glob("*/*/*.png"))[0]
        cases = {**{kind: ("3", reason) for kind, reason in IMAGE_KINDS.items()},
                 "label_9": ("9", "unknown_label"), "huge_label": ("3" * 10_000, "bad_label_file"),
                 "label_is_folder": (None, "bad_label_file")}
        for i, (kind, (code, reason)) in enumerate(cases.items()):
            seq = f"S9{i:02d}/001"
            stem = f"S9{i:02d}_001_0000000"
            (images / seq).mkdir(parents=True)
            shutil.copy(good, images / seq / f"{stem}1.png")  # the first frame: neutral
            expected[f"cohn-kanade-images/{seq}/{stem}1.png"] = "record"
            peak = images / seq / f"{stem}2.png"
            if kind in IMAGE_KINDS:
                plant_image(peak, kind, good)
            else:
                shutil.copy(good, peak)
            expected[f"cohn-kanade-images/{seq}/{stem}2.png"] = reason
            label = labels / seq / f"{stem}2_emotion.txt"
            label.parent.mkdir(parents=True)
            if code is None:
                label.mkdir()
            else:
                label.write_text(f"   {code}.0000000e+00\n")
    elif dataset == "ravdess":
        folder = root / "Actor_01"
        good = next(folder.glob("*.mp4"))
        for i, kind in enumerate(("zero_byte", "text", "truncated", "broken_link")):
            name = f"02-01-0{i + 1}-01-02-02-01.mp4"
            plant_image(folder / name, kind, good)
            expected[f"Actor_01/{name}"] = "corrupt_video"
        junk(folder)
    elif dataset == "fer2013":
        (root / "fer2013new.csv").unlink()  # FER+ votes align row by row with the original
        pixels = " ".join(["128"] * 2304)
        rows = {"0,{p},Validation": "record", "0,{p},": "unknown_split",
                "0,{p},Tuesday": "unknown_split", "0,{p}": "short_row",
                "0,{p},Training,extra": "long_row", "9,{p},Training": "unknown_label",
                "0,1 2 3,Training": "bad_pixel_count", "": "short_row"}
        csv = root / "fer2013.csv"
        lines = csv.read_text().rstrip("\n").split("\n")
        first = len(lines) + 1
        csv.write_text("\n".join(lines + [r.format(p=pixels) for r in rows]) + "\n")
        for i, reason in enumerate(rows.values()):
            expected[f"fer2013.csv:{first + i}"] = reason
    return expected


@pytest.mark.parametrize("dataset", ["fer2013", "face_expression", "ckplus", "kdef", "jaffe",
                                     "ravdess"])
def test_bad_files_become_rejects_and_good_files_come_through(tmp_path, dataset):
    clean_raw, raw = tmp_path / "clean", tmp_path / "raw"
    write_demo(clean_raw, DemoSpec(datasets=(dataset,)))
    shutil.copytree(clean_raw, raw, symlinks=True)
    if dataset == "fer2013":
        (clean_raw / dataset / "fer2013new.csv").unlink()
    expected = plant(raw, dataset)
    clean, dirty = ingest_dataset(clean_raw, dataset), ingest_dataset(raw, dataset)

    assert dirty.accounted, (dirty.unaccounted[:5], dirty.unexpected[:5])
    rejects = dirty.rejects.to_pandas().groupby("source_path")["reason"].agg(set)
    records = dirty.records.to_pandas()
    for path, reason in expected.items():
        if reason == "record":
            assert path in set(records["source_path"]), path
        else:
            assert rejects.get(path) == {reason}, (path, rejects.get(path), reason)
            assert path not in set(records["source_path"]), path
    # every good file of the clean run comes through unchanged
    before = clean.records.to_pandas().set_index(["source_path", "frame_index"], drop=False)
    after = records.set_index(["source_path", "frame_index"], drop=False).loc[before.index]
    for column in ("image_id", "label", "image", "subject_id", "official_split"):
        assert after[column].tolist() == before[column].tolist(), column
    # the counts add up: each input is records or rejects, nothing else
    seen = set(records["source_path"]) | set(rejects.index)
    assert len(seen) == dirty.inputs
    assert dirty.rejects.num_rows >= len([r for r in expected.values() if r != "record"])
