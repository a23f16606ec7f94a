"""What every reader produces, and the small helpers they share."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from fer_data.frames import FrameOptions
from fer_data.images import IMAGE_SUFFIXES, MAX_PIXELS, BadImage, Encoded, load_many

SPLIT_SYNONYMS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "val",
    "test": "test",
    "testing": "test",
    "privatetest": "test",
}
# Files that come with the downloads but hold no data; counted in metadata, never read.
IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})


def image_id(dataset: str, rel_path: str, frame_index: int | None = None,
             face_key: str | None = None) -> str:
    """Stable across machines and runs: a hash of where the image came from (and which of its
    faces, where a dataset labels several faces in one photograph)."""
    key = f"{dataset}/{rel_path}#{'' if frame_index is None else frame_index}"
    if face_key is not None:
        key += f"@{face_key}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


# Where a dataset gives a face's box, the stored image is the box plus this much context on
# each side (a fraction of the box's size): room for the crop margin and the eye levelling of
# the faces stage, without storing the whole photograph once per face.
BOX_CONTEXT = 0.5


@dataclass(frozen=True)
class GivenFace:
    """Where the dataset says the face is, in the ORIGINAL file's pixels. `whole_image` means
    the file is already an aligned face crop (RAF-DB's aligned set, AffectNet's new release):
    the faces stage passes it through instead of cropping again."""

    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None  # image-left eye first
    score: float | None = None  # the dataset's own confidence in the box (ExpW)
    key: str | None = None  # which face of the photograph (ExpW's face_id)
    whole_image: bool = False

    def region(self) -> tuple[float, float, float, float] | None:
        """The part of the file to store: the box with BOX_CONTEXT on each side."""
        if self.box is None or self.whole_image:
            return None
        x1, y1, x2, y2 = self.box
        pad = BOX_CONTEXT * max(x2 - x1, y2 - y1)
        return (x1 - pad, y1 - pad, x2 + pad, y2 + pad)

    def column(self, offset: tuple[int, int]) -> dict[str, Any]:
        """The raw_images `given_face` value; `offset` is the stored image's top-left corner
        in the file (where a region was cut)."""
        return {"box": list(self.box) if self.box else None,
                "eyes": [v for point in self.eyes for v in point] if self.eyes else None,
                "score": self.score, "whole_image": self.whole_image, "offset": list(offset)}


@dataclass
class Record:
    """One image in the raw_images table (see fer_data.schema.RAW_IMAGE)."""

    dataset: str
    source_path: str
    label: str
    image: bytes
    width: int
    height: int
    original_label: str | None = None
    subject_id: str | None = None
    official_split: str | None = None
    frame_index: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    given_face: GivenFace | None = None
    offset: tuple[int, int] = (0, 0)  # the stored image's top-left corner in the file
    valence: float | None = None  # AffectNet's continuous labels, -1..1
    arousal: float | None = None

    def row(self) -> dict[str, Any]:
        given = self.given_face
        return {
            "image_id": image_id(self.dataset, self.source_path, self.frame_index,
                                 given.key if given else None),
            "dataset": self.dataset,
            "source_path": self.source_path,
            "frame_index": self.frame_index,
            "subject_id": self.subject_id,
            "label": self.label,
            "original_label": self.original_label,
            "official_split": self.official_split,
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "attributes": json.dumps(self.attributes, sort_keys=True) if self.attributes else None,
            "given_face": given.column(self.offset) if given else None,
            "valence": self.valence,
            "arousal": self.arousal,
        }


@dataclass
class Reject:
    """An input that did not become a record, and why."""

    dataset: str
    source_path: str
    reason: str
    detail: str = ""
    stage: str = "ingest"

    def row(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "source_path": self.source_path,
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ReadOptions:
    """Reader settings that change what becomes a record (set from the asset config)."""

    ckplus_peak_frames: int = 3
    ckplus_first_frame_neutral: bool = True
    ferplus_labels: bool = False
    frames: FrameOptions = field(default_factory=FrameOptions)
    workers: int | None = None
    max_pixels: int = MAX_PIXELS  # larger images are rejected as too_large, before decoding


@dataclass
class Scan:
    """What a reader found: the input units it will account for (a file, a CSV row as
    `file:row`, a video), the outcomes (each keyed by an input's source_path), and the
    label or metadata files it read along the way."""

    inputs: list[str]
    outcomes: Iterator[Record | Reject]
    consumed: list[str] = field(default_factory=list)


class Reader(Protocol):
    """One original dataset layout. `detect` is cheap; `scan` lists the inputs up front and
    yields at least one Record or Reject for each (a video may yield many frame Records)."""

    name: str
    layout: str  # human description, used in error messages

    def detect(self, root: Path) -> bool: ...

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan: ...


@dataclass
class FileSpec:
    """A file a reader has matched to a label and subject, before its pixels are decoded."""

    path: Path
    label: str
    original_label: str
    subject_id: str | None = None
    official_split: str | None = None
    frame_index: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    given_face: GivenFace | None = None
    valence: float | None = None
    arousal: float | None = None


def decode_specs(
    specs: list[FileSpec], root: Path, dataset: str, options: ReadOptions
) -> Iterator[Record | Reject]:
    """Decode the files behind `specs` in parallel and turn each into a Record or a Reject."""
    regions = [s.given_face.region() if s.given_face else None for s in specs]
    decoded = load_many([s.path for s in specs], options.workers, options.max_pixels,
                        regions if any(regions) else None)
    for spec, result in zip(specs, decoded, strict=True):
        rel = relpath(spec.path, root)
        if isinstance(result, BadImage):
            face = f" (face {spec.given_face.key})" if spec.given_face and \
                spec.given_face.key is not None else ""
            yield Reject(dataset, rel, result.reason, result.detail + face)
            continue
        yield record_from(spec, result, rel, dataset)


def record_from(spec: FileSpec, encoded: Encoded, rel: str, dataset: str) -> Record:
    return Record(
        dataset=dataset,
        source_path=rel,
        label=spec.label,
        original_label=spec.original_label,
        image=encoded.png,
        width=encoded.width,
        height=encoded.height,
        subject_id=spec.subject_id,
        official_split=spec.official_split,
        frame_index=spec.frame_index,
        attributes=spec.attributes,
        given_face=spec.given_face,
        offset=encoded.offset,
        valence=spec.valence,
        arousal=spec.arousal,
    )


def relpath(path: Path | str, root: Path | str) -> str:
    """`path` relative to `root`, with forward slashes (a string prefix cut in the usual case:
    this runs once per file)."""
    text, prefix = str(path), str(root).rstrip(os.sep) + os.sep
    rel = text[len(prefix):].replace(os.sep, "/") if text.startswith(prefix) else \
        Path(os.path.relpath(text, root)).as_posix()
    return printable(rel)


def printable(name: str) -> str:
    """A file name as valid UTF-8 text for the tables: bytes that are not UTF-8 (a name from
    another OS's encoding, kept by Python as surrogates) become \\xNN escapes."""
    try:
        name.encode()
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def walk_files(root: Path) -> Iterable[Path]:
    """Every regular file under root, sorted, so runs are deterministic."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_ignored(path: Path) -> bool:
    return path.name.lower() in IGNORED_NAMES or path.name.startswith("._")


def find_files(root: Path, name: str, max_depth: int = 4) -> list[Path]:
    """Every file called `name` under root, at most max_depth folders down, shallowest first:
    a label file is found wherever the user unpacked the download inside the dataset folder."""
    found, level = [], [root]
    for _ in range(max_depth + 1):
        found += [d / name for d in level if (d / name).is_file()]
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir()) if level else []
    return found


def text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of a label file's non-blank lines; undecodable bytes become U+FFFD
    so that one bad line is one reject, not a failed dataset."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]
