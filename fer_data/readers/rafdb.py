"""RAF-DB (Real-world Affective Faces) in its original layout:

    basic/EmoLabel/list_patition_label.txt      train_00001.jpg 5   (sic: "patition")
    basic/Image/aligned/train_00001_aligned.jpg  100x100 aligned faces
    basic/Image/original/train_00001.jpg         the photographs
    basic/Annotation/boundingbox/train_00001_boundingbox.txt   x1 y1 x2 y2
    basic/Annotation/manual/train_00001_manu_attri.txt  5 landmarks, gender, race, age group

Labels 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral; the file
name's prefix is the official split (train/test); there are no subject ids. The aligned faces
are used where they exist (passed through as crops); else the photograph with the box file's
face (eyes levelled from the manual landmarks), else the photograph goes to the detectors. The
compound set (compound/, 11 two-word labels) has the same layout: its rows become
`compound_expression` rejects, as the seven classes cannot hold them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fer_data.labels import RAFDB_CODES, RAFDB_COMPOUND
from fer_data.readers.base import (
    FileSpec,
    GivenFace,
    ReadOptions,
    Record,
    Reject,
    Scan,
    decode_specs,
    find_files,
    relpath,
    text_lines,
)

LABEL_FILE = "list_patition_label.txt"
GENDER = {0: "male", 1: "female", 2: "unsure"}
RACE = {0: "caucasian", 1: "african-american", 2: "asian"}
AGE = {0: "0-3", 1: "4-19", 2: "20-39", 3: "40-69", 4: "70+"}


@dataclass(frozen=True)
class Line:
    """One label line, resolved against its set's folders."""

    where: str  # label file:line, the key of a malformed line's reject
    name: str
    code: int
    split: str
    image: Path  # the file this line is read from (aligned face or photograph)
    face: GivenFace | None
    attributes: dict
    compound: bool


def read_box(path: Path) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in path.read_text(errors="replace").split()[:4])
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"box {x1} {y1} {x2} {y2} is empty")
    return x1, y1, x2, y2


def read_manual(path: Path) -> tuple[tuple, dict]:
    """The eyes (image-left first) and the attributes of a *_manu_attri.txt file."""
    rows = [line.split() for line in path.read_text(errors="replace").splitlines()
            if line.strip()]
    points = sorted((float(x), float(y)) for x, y in rows[:2])
    codes = [int(r[0]) for r in rows[5:8]]
    attributes = {key: table.get(code, str(code)) for key, table, code in
                  zip(("gender", "race", "age"), (GENDER, RACE, AGE), codes, strict=False)}
    return tuple(points), attributes


@dataclass
class RafdbReader:
    name: str = "rafdb_original"
    layout: str = (f"basic/EmoLabel/{LABEL_FILE} (lines 'train_00001.jpg 5') + "
                   "basic/Image/aligned/train_00001_aligned.jpg or basic/Image/original/"
                   "train_00001.jpg (+ basic/Annotation/boundingbox, manual)")

    def detect(self, root: Path) -> bool:
        return bool(find_files(root, LABEL_FILE))

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan:
        inputs, consumed, lines, bad = [], [], [], []
        for label_file in find_files(root, LABEL_FILE):
            consumed.append(relpath(label_file, root))
            for item in self._lines(label_file, root, dataset):
                if isinstance(item, Reject):
                    bad.append(item)
                    inputs.append(item.source_path)
                else:
                    lines.append(item)
                    inputs.append(relpath(item.image, root))
        for line in lines:  # read along the way: annotations, and photographs an aligned
            set_root = line.image.parents[2]  # face stands for
            consumed += [relpath(p, root) for p in (*self._annotations(set_root, line.name),
                                                    set_root / "Image" / "original" / line.name)
                         if p.is_file() and p != line.image]

        def outcomes() -> Iterator[Record | Reject]:
            yield from bad
            specs = []
            for line in lines:
                rel = relpath(line.image, root)
                if not line.image.is_file():
                    yield Reject(dataset, rel, "missing_image",
                                 f"{line.where} names {line.name}; expected {rel}")
                elif line.compound:
                    yield Reject(dataset, rel, "compound_expression",
                                 f"{line.where}: code {line.code} "
                                 f"({RAFDB_COMPOUND.get(line.code, '?')}) is a compound "
                                 "expression, which the seven classes cannot hold")
                else:
                    specs.append(FileSpec(line.image, RAFDB_CODES[line.code], str(line.code),
                                          None, line.split, attributes=line.attributes,
                                          given_face=line.face))
            yield from decode_specs(specs, root, dataset, options)

        return Scan(inputs, outcomes(), sorted(set(consumed)))

    @staticmethod
    def _annotations(set_root: Path, name: str) -> tuple[Path, Path]:
        stem = Path(name).stem
        return (set_root / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt",
                set_root / "Annotation" / "manual" / f"{stem}_manu_attri.txt")

    def _lines(self, label_file: Path, root: Path, dataset: str) -> Iterator[Line | Reject]:
        set_root = label_file.parent.parent  # basic/ or compound/
        compound = set_root.name.lower() == "compound"
        seen: dict[str, str] = {}
        for number, text in text_lines(label_file):
            where = f"{relpath(label_file, root)}:{number}"
            parts = text.split()
            if len(parts) != 2 or not parts[1].isdigit():
                yield Reject(dataset, where, "bad_label_line",
                             f"{text[:80]!r}: expected '<image name> <label 1-7>'")
                continue
            name, code = parts[0], int(parts[1])
            split = name.split("_")[0].lower()
            limit = 11 if compound else 7
            if split not in ("train", "test") or not 1 <= code <= limit:
                why = (f"split prefix {split!r} is not train/test" if split not in
                       ("train", "test") else f"label {code} is not 1-{limit}")
                yield Reject(dataset, where, "bad_label_line", f"{text[:80]!r}: {why}")
                continue
            if name in seen:
                yield Reject(dataset, where, "repeated_line", f"{name} is already labelled "
                             f"at {seen[name]}")
                continue
            seen[name] = where
            yield self._resolve(set_root, where, name, code, split, compound)

    def _resolve(self, set_root: Path, where: str, name: str, code: int, split: str,
                 compound: bool) -> Line:
        stem = Path(name).stem
        aligned = set_root / "Image" / "aligned" / f"{stem}_aligned.jpg"
        original = set_root / "Image" / "original" / name
        box_file, manual_file = self._annotations(set_root, name)
        attributes, eyes, box = {}, None, None
        try:
            if manual_file.is_file():
                eyes, attributes = read_manual(manual_file)
            if box_file.is_file():
                box = read_box(box_file)
        except (ValueError, IndexError, OSError):
            eyes, box = None, None  # a broken annotation: the detectors find the face instead
        # the aligned face where it exists (or where only the aligned set was unpacked)
        if aligned.is_file() or not original.is_file() and aligned.parent.is_dir():
            return Line(where, name, code, split, aligned, GivenFace(whole_image=True),
                        attributes, compound)
        face = GivenFace(box=box, eyes=eyes) if box else None
        return Line(where, name, code, split, original, face, attributes, compound)
