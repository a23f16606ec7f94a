"""ExpW (Expression in-the-Wild, Zhang et al. 2018) in its original layout:

    data/label/label.lst     one line per FACE:
                             image_name face_id top left right bottom confidence label
    data/image/origin/*.jpg  the photographs (often unpacked elsewhere in the dataset folder)

Labels 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral. A photograph may
hold several labelled faces: each becomes its own record, cut from the photograph with its
context (readers.base.BOX_CONTEXT) and cropped at the given box by the faces stage, which keeps
the box's confidence as the face's score. No official split, no subject ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fer_data.labels import EXPW_CODES
from fer_data.readers.base import (
    FileSpec,
    GivenFace,
    ReadOptions,
    Record,
    Reject,
    Scan,
    decode_specs,
    find_files,
    is_ignored,
    is_image,
    relpath,
    text_lines,
    walk_files,
)

LABEL_FILE = "label.lst"
FIELDS = "image_name face_id top left right bottom confidence label"


def parse_line(text: str) -> tuple[str, int, tuple[float, float, float, float], float, int]:
    """(image name, face id, box x1 y1 x2 y2, confidence, label code); ValueError saying what
    is wrong with the line."""
    parts = text.split()
    if len(parts) != 8:
        raise ValueError(f"{len(parts)} fields; expected 8: {FIELDS}")
    name, face_id, top, left, right, bottom, confidence, code = parts
    try:
        top_, left_, right_, bottom_ = (float(v) for v in (top, left, right, bottom))
        face, score, label = int(face_id), float(confidence), int(code)
    except ValueError as exc:
        raise ValueError(f"not a number ({exc}); expected: {FIELDS}") from None
    if label not in EXPW_CODES:
        raise ValueError(f"label {label} is not 0-6")
    if right_ <= left_ or bottom_ <= top_:
        raise ValueError(f"empty box: top {top} left {left} right {right} bottom {bottom}")
    return name, face, (left_, top_, right_, bottom_), score, label


def image_index(root: Path) -> dict[str, Path]:
    """Image file name -> path, wherever the photographs were unpacked; a name found twice
    keeps the copy under a folder called `origin` (the original layout), else the first."""
    def in_origin(path: Path) -> bool:
        return path.parent.name.lower() == "origin"

    index: dict[str, Path] = {}
    for path in walk_files(root):
        if is_image(path) and not is_ignored(path) and (
                path.name not in index or in_origin(path) and not in_origin(index[path.name])):
            index[path.name] = path
    return index


@dataclass
class ExpwReader:
    name: str = "expw_original"
    layout: str = (f"data/label/{LABEL_FILE} (one line per face: {FIELDS}) + "
                   "data/image/origin/<image_name>.jpg")

    def detect(self, root: Path) -> bool:
        return bool(find_files(root, LABEL_FILE))

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan:
        label_file = find_files(root, LABEL_FILE)[0]
        where = relpath(label_file, root)
        images = image_index(root)
        inputs, early, specs = [], [], []
        seen: dict[tuple[str, int], int] = {}
        for number, text in text_lines(label_file):
            key = f"{where}:{number}"
            try:
                name, face_id, box, score, code = parse_line(text)
            except ValueError as exc:
                inputs.append(key)
                early.append(Reject(dataset, key, "bad_label_line", f"{text[:80]!r}: {exc}"))
                continue
            path = images.get(name)
            rel = relpath(path, root) if path else f"(no file) {name}"
            inputs.append(rel)
            if path is None:
                early.append(Reject(dataset, rel, "missing_image",
                                    f"{key} labels face {face_id} of {name}, which is not "
                                    f"under {root} (expected data/image/origin/{name})"))
            elif (name, face_id) in seen:
                early.append(Reject(dataset, rel, "repeated_line",
                                    f"{key}: face {face_id} of {name} is already labelled at "
                                    f"line {seen[name, face_id]}"))
            else:
                seen[name, face_id] = number
                specs.append(FileSpec(path, EXPW_CODES[code], str(code),
                                      attributes={"face_id": face_id, "box_confidence": score},
                                      given_face=GivenFace(box=box, score=score,
                                                           key=str(face_id))))

        def outcomes() -> Iterator[Record | Reject]:
            yield from early
            yield from decode_specs(specs, root, dataset, options)

        return Scan(inputs, outcomes(), [where])
