"""`<split>/<class>/<file>` image folder sets: the FER2013 image export, the Kaggle
face-expression folders (`images/train`, `images/validation`), the 4-class sets, and CK+48
(`CK+48/<class>/S010_004_00000017.png`, no split level)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from fer_data.labels import canonical
from fer_data.readers.base import (
    SPLIT_SYNONYMS,
    FileSpec,
    ReadOptions,
    Record,
    Reject,
    Scan,
    decode_specs,
    is_ignored,
    is_image,
    relpath,
    walk_files,
)

# The FER2013 image export names files after the CSV's Usage column.
FER2013_USAGE = re.compile(r"^(Training|PublicTest|PrivateTest)_\d+$")
USAGE_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
CKPLUS_NAME = re.compile(r"^(S\d{3})_(\d{3})_(\d{8})$")

# Parses a file stem into (subject_id, frame_index, attributes) or raises ValueError.
NameParser = Callable[[str], tuple[str | None, int | None, dict]]


def find_class_dirs(root: Path) -> list[Path]:
    """Directories under root whose name is an expression class (synonyms included)."""
    found = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        dirnames.sort()
        classes = [d for d in dirnames if canonical(d) is not None]
        found += [Path(dirpath) / d for d in classes]
        # a class folder inside another class folder is data, not layout: do not descend
        dirnames[:] = [d for d in dirnames if d not in classes]
    return sorted(found)


def split_of(class_dir: Path, root: Path) -> str | None:
    """The split named by the nearest split-named ancestor (`images/validation/happy` -> val)."""
    for parent in class_dir.relative_to(root).parents:
        if parent.name and parent.name.lower() in SPLIT_SYNONYMS:
            return SPLIT_SYNONYMS[parent.name.lower()]
    return None


@dataclass
class FolderReader:
    """Any folder set whose class comes from a folder name."""

    name: str = "image_folders"
    layout: str = "<split>/<class>/<image> (e.g. train/happy/0001.png), or <class>/<image>"
    parse_name: NameParser | None = None

    def detect(self, root: Path) -> bool:
        return bool(find_class_dirs(root))

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan:
        class_dirs = find_class_dirs(root)
        labelled: dict[Path, Path] = {}  # image file -> its class folder
        for class_dir in class_dirs:
            for path in walk_files(class_dir):
                if is_image(path) and not is_ignored(path):
                    labelled[path] = class_dir
        strays = [p for p in walk_files(root) if is_image(p) and not is_ignored(p)
                  and p not in labelled]
        inputs = [relpath(p, root) for p in [*labelled, *strays]]

        def outcomes() -> Iterator[Record | Reject]:
            for path in strays:
                yield Reject(dataset, relpath(path, root), "unknown_label",
                             f"folder {path.parent.name!r} is not an expression class")
            specs: list[FileSpec] = []
            for path, class_dir in labelled.items():
                spec = self._spec(path, class_dir, root)
                if isinstance(spec, str):
                    yield Reject(dataset, relpath(path, root), "unparsable_name", spec)
                else:
                    specs.append(spec)
            yield from decode_specs(specs, root, dataset, options)

        return Scan(inputs, outcomes())

    def _spec(self, path: Path, class_dir: Path, root: Path) -> FileSpec | str:
        split = split_of(class_dir, root)
        usage = FER2013_USAGE.match(path.stem)
        if usage:
            split = USAGE_SPLIT[usage.group(1)]
        subject, frame, attributes = None, None, {}
        if self.parse_name is not None:
            try:
                subject, frame, attributes = self.parse_name(path.stem)
            except ValueError as exc:
                return str(exc)
        return FileSpec(
            path=path,
            label=canonical(class_dir.name),
            original_label=class_dir.name,
            subject_id=subject,
            official_split=split,
            frame_index=frame,
            attributes=attributes,
        )


def parse_ckplus_name(stem: str) -> tuple[str, int, dict]:
    """`S010_004_00000017` -> subject ckplus:S010, frame 17, sequence 004."""
    match = CKPLUS_NAME.match(stem)
    if not match:
        raise ValueError(f"{stem!r} is not a CK+ frame name like S010_004_00000017")
    subject, sequence, frame = match.groups()
    return f"ckplus:{subject}", int(frame), {"sequence": sequence}
