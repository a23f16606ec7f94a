"""AffectNet (Mollahosseini et al. 2017) in either of its releases:

- the original: `Manually_Annotated_Images/<dir>/<file>.jpg` + `Manually_Annotated_file_lists/
  {training,validation}.csv` with the columns `subDirectory_filePath, face_x, face_y,
  face_width, face_height, facial_landmarks, expression, valence, arousal` (landmarks as 68
  `x;y` pairs). The given box is the face (eyes levelled from landmarks 36-47);
- the newer: `{train_set,val_set}/images/<id>.jpg` (224x224 face crops, passed through) +
  `annotations/<id>_exp.npy`, `_val.npy`, `_aro.npy`, `_lnd.npy`.

Expression 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt;
8 none, 9 uncertain and 10 no-face are rejects with those reasons. Valence and arousal are
kept as columns. The official validation set is the test split, as papers report it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from fer_data.labels import AFFECTNET_CODES, AFFECTNET_NOT_EXPRESSIONS
from fer_data.readers.base import (
    FileSpec,
    GivenFace,
    ReadOptions,
    Record,
    Reject,
    Scan,
    decode_specs,
    find_files,
    is_image,
    relpath,
)

LISTS = {"training.csv": "train", "validation.csv": "test"}
IMAGES_DIR = "Manually_Annotated_Images"
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
           "facial_landmarks", "expression", "valence", "arousal")
SETS = {"train_set": "train", "val_set": "test"}


def eyes_from_landmarks(points: list[float]) -> tuple | None:
    """The eye centres (image-left first) of 68 iBUG landmarks: the means of 36-41 and 42-47."""
    if len(points) != 136:
        return None
    xy = np.asarray(points, np.float64).reshape(68, 2)
    left, right = xy[36:42].mean(axis=0), xy[42:48].mean(axis=0)
    return tuple(sorted((tuple(map(float, left)), tuple(map(float, right)))))


def expression(code: int, dataset: str, where: str) -> str | Reject:
    """The canonical label of an expression code, or the reject its row becomes."""
    if code in AFFECTNET_CODES:
        return AFFECTNET_CODES[code]
    if code in AFFECTNET_NOT_EXPRESSIONS:
        return Reject(dataset, where, AFFECTNET_NOT_EXPRESSIONS[code],
                      f"expression {code} ({AFFECTNET_NOT_EXPRESSIONS[code]}) is not an "
                      "expression class")
    return Reject(dataset, where, "unknown_label", f"expression {code} is not 0-10")


def parse_row(row: dict) -> tuple[str, tuple, tuple | None, int, float, float]:
    """(relative image path, box x1 y1 x2 y2, eyes, expression, valence, arousal)."""
    x, y, w, h = (float(row[c]) for c in ("face_x", "face_y", "face_width", "face_height"))
    if w <= 0 or h <= 0:
        raise ValueError(f"empty box: width {w}, height {h}")
    landmarks = [float(v) for v in (row["facial_landmarks"] or "").split(";") if v.strip()]
    return (row["subDirectory_filePath"].strip(), (x, y, x + w, y + h),
            eyes_from_landmarks(landmarks), int(row["expression"]), float(row["valence"]),
            float(row["arousal"]))


@dataclass
class AffectNetCsvReader:
    name: str = "affectnet_original"
    layout: str = (f"{IMAGES_DIR}/<dir>/<file>.jpg + Manually_Annotated_file_lists/"
                   f"{{training,validation}}.csv ({', '.join(COLUMNS)})")

    def detect(self, root: Path) -> bool:
        return any(find_files(root, name) for name in LISTS)

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan:
        images = next((d for d in [root, *sorted(root.glob("**/" + IMAGES_DIR))]
                       if d.name == IMAGES_DIR and d.is_dir()), root)
        inputs, early, specs, consumed = [], [], [], []
        seen: dict[str, str] = {}
        for list_name, split in LISTS.items():
            for list_file in find_files(root, list_name)[:1]:
                consumed.append(relpath(list_file, root))
                for key, item in self._rows(list_file, root, images, split, dataset, seen):
                    inputs.append(key)
                    (early if isinstance(item, Reject) else specs).append(item)

        def outcomes() -> Iterator[Record | Reject]:
            yield from early
            yield from decode_specs(specs, root, dataset, options)

        return Scan(inputs, outcomes(), consumed)

    @staticmethod
    def _rows(list_file: Path, root: Path, images: Path, split: str, dataset: str,
              seen: dict[str, str]) -> Iterator[tuple[str, FileSpec | Reject]]:
        where = relpath(list_file, root)
        with open(list_file, encoding="utf-8", errors="replace", newline="") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS) - set(reader.fieldnames or ())
            if missing:
                yield where, Reject(dataset, where, "bad_label_file",
                                    f"no column(s) {sorted(missing)}; expected {COLUMNS}")
                return
            for row in reader:
                key = f"{where}:{reader.line_num}"
                try:
                    if None in row or None in row.values():
                        raise ValueError(f"{len(row)} fields; expected {len(COLUMNS)}")
                    rel, box, eyes, code, valence, arousal = parse_row(row)
                except ValueError as exc:
                    yield key, Reject(dataset, key, "bad_label_line", str(exc))
                    continue
                path = images / rel
                image_key = relpath(path, root)
                label = expression(code, dataset, image_key)
                if image_key in seen:
                    yield key, Reject(dataset, key, "repeated_line",
                                      f"{rel} is already listed at {seen[image_key]}")
                elif isinstance(label, Reject):
                    yield image_key, label
                elif not path.is_file():
                    yield image_key, Reject(dataset, image_key, "missing_image",
                                            f"{key} lists {rel}; expected {image_key}")
                else:
                    seen[image_key] = key
                    yield image_key, FileSpec(
                        path, label, str(code), None, split, given_face=GivenFace(box, eyes),
                        valence=valence, arousal=arousal)


@dataclass
class AffectNetNpyReader:
    name: str = "affectnet_npy"
    layout: str = ("{train_set,val_set}/images/<id>.jpg + {train_set,val_set}/annotations/"
                   "<id>_exp.npy (and _val.npy, _aro.npy, _lnd.npy)")

    def detect(self, root: Path) -> bool:
        return bool(self._sets(root))

    @staticmethod
    def _sets(root: Path) -> list[tuple[Path, str]]:
        found = []
        for name, split in SETS.items():
            found += [(d, split) for d in [root / name, *sorted(root.glob(f"*/{name}"))]
                      if (d / "images").is_dir()]
        return found

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan:
        inputs, early, specs, consumed = [], [], [], []
        for folder, split in self._sets(root):
            for path in sorted(p for p in (folder / "images").iterdir() if is_image(p)):
                rel = relpath(path, root)
                inputs.append(rel)
                item = self._annotated(path, folder / "annotations", split, dataset, rel)
                (early if isinstance(item, Reject) else specs).append(item)
                consumed += [relpath(folder / "annotations" / f"{path.stem}_{kind}.npy", root)
                             for kind in ("exp", "val", "aro", "lnd")]

        def outcomes() -> Iterator[Record | Reject]:
            yield from early
            yield from decode_specs(specs, root, dataset, options)

        return Scan(inputs, outcomes(), consumed)

    @staticmethod
    def _annotated(path: Path, annotations: Path, split: str, dataset: str,
                   rel: str) -> FileSpec | Reject:
        def value(kind: str) -> float | None:
            file = annotations / f"{path.stem}_{kind}.npy"
            return float(np.load(file, allow_pickle=False).item()) if file.is_file() else None

        try:
            code = value("exp")
            valence, arousal = value("val"), value("aro")
        except (ValueError, OSError, TypeError) as exc:
            return Reject(dataset, rel, "bad_label_file",
                          f"{path.stem}_*.npy: {type(exc).__name__}: {exc}")
        if code is None:
            return Reject(dataset, rel, "unlabeled",
                          f"no annotations/{path.stem}_exp.npy next to the image folder")
        label = expression(int(code), dataset, rel)
        if isinstance(label, Reject):
            return label
        return FileSpec(path, label, str(int(code)), None, split,
                        given_face=GivenFace(whole_image=True), valence=valence,
                        arousal=arousal)
