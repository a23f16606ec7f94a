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


def image_id(dataset: str, rel_path: str, frame_index: int | None = None) -> str:
    """Stable across machines and runs: a hash of where the image came from."""
    key = f"{dataset}/{rel_path}#{'' if frame_index is None else frame_index}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


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

    def row(self) -> dict[str, Any]:
        return {
            "image_id": image_id(self.dataset, self.source_path, self.frame_index),
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


def decode_specs(
    specs: list[FileSpec], root: Path, dataset: str, options: ReadOptions
) -> Iterator[Record | Reject]:
    """Decode the files behind `specs` in parallel and turn each into a Record or a Reject."""
    decoded = load_many([s.path for s in specs], options.workers, options.max_pixels)
    for spec, result in zip(specs, decoded, strict=True):
        rel = relpath(spec.path, root)
        if isinstance(result, BadImage):
            yield Reject(dataset, rel, result.reason, result.detail)
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
