"""CK+ in its original layout: `cohn-kanade-images/S005/001/S005_001_00000011.png` with labels in
`Emotion/S005/001/S005_001_00000011_emotion.txt` (one float code). A sequence runs from a neutral
first frame to the peak expression, so the last frames take the sequence's label and the first
frame is neutral; the frames in between are rejected as `intermediate_frame`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fer_data.labels import CKPLUS_CODES
from fer_data.readers.base import (
    FileSpec,
    ReadOptions,
    Record,
    Reject,
    Scan,
    decode_specs,
    is_image,
    relpath,
)
from fer_data.readers.folders import parse_ckplus_name

IMAGES_DIR = "cohn-kanade-images"
EMOTION_DIR = "Emotion"


def find_images_dir(root: Path) -> Path | None:
    for candidate in [root / IMAGES_DIR, *sorted(root.glob(f"*/{IMAGES_DIR}")),
                      *sorted(root.glob(f"*/*/{IMAGES_DIR}"))]:
        if candidate.is_dir():
            return candidate
    return None


def find_emotion_dir(images_dir: Path) -> Path | None:
    for base in (images_dir.parent, images_dir.parent.parent):
        for name in (EMOTION_DIR, "Emotion_labels", "Emotion_labels/Emotion"):
            if (base / name).is_dir():
                return base / name
    return None


def read_emotion_file(path: Path) -> int:
    """The code in an `_emotion.txt` file (`   3.0000000e+00`); ValueError when unreadable."""
    size = path.stat().st_size
    if size > 1000:  # not read whole: a file this large is not an emotion file
        raise ValueError(f"{size:,} bytes: an emotion file holds one number")
    text = path.read_text(errors="replace").strip()
    value = float(text)
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole emotion code")
    return int(value)


@dataclass
class CkPlusReader:
    name: str = "ckplus_original"
    layout: str = ("cohn-kanade-images/S005/001/S005_001_00000011.png + "
                   "Emotion/S005/001/S005_001_00000011_emotion.txt")

    def detect(self, root: Path) -> bool:
        return find_images_dir(root) is not None

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan:
        images_dir = find_images_dir(root)
        emotion_dir = find_emotion_dir(images_dir)
        sequences = sorted(p for p in images_dir.glob("*/*") if p.is_dir())
        frames = {seq: sorted(f for f in seq.iterdir() if not f.is_dir() and is_image(f))
                  for seq in sequences}
        inputs = [relpath(f, root) for seq in sequences for f in frames[seq]]
        label_files = {seq: self._label_file(emotion_dir, images_dir, seq) for seq in sequences}
        consumed = [relpath(p, root) for p in label_files.values() if p is not None]

        def outcomes() -> Iterator[Record | Reject]:
            specs: list[FileSpec] = []
            for seq in sequences:
                for item in self._sequence(seq, frames[seq], label_files[seq], root, dataset,
                                           options):
                    if isinstance(item, Reject):
                        yield item
                    else:
                        specs.append(item)
            yield from decode_specs(specs, root, dataset, options)

        return Scan(inputs, outcomes(), consumed)

    @staticmethod
    def _label_file(emotion_dir: Path | None, images_dir: Path, seq: Path) -> Path | None:
        if emotion_dir is None:
            return None
        found = sorted((emotion_dir / seq.relative_to(images_dir)).glob("*_emotion.txt"))
        return found[-1] if found else None

    def _sequence(self, seq, files, label_file, root, dataset, options):
        label, why = None, "sequence_unlabeled"
        if label_file is not None:
            try:
                code = read_emotion_file(label_file)
                label = CKPLUS_CODES.get(code)
                if label is None:
                    why = (f"unknown_label: {relpath(label_file, root)} holds code {code}; CK+ "
                           f"codes are {min(CKPLUS_CODES)}..{max(CKPLUS_CODES)}")
            except (ValueError, OSError) as exc:
                why = f"bad_label_file: {relpath(label_file, root)}: {type(exc).__name__}: {exc}"
        first_neutral = options.ckplus_first_frame_neutral
        peak_start = max(len(files) - options.ckplus_peak_frames, 1 if first_neutral else 0)
        for index, path in enumerate(files):
            rel = relpath(path, root)
            try:
                subject, frame, attributes = parse_ckplus_name(path.stem)
            except ValueError as exc:
                yield Reject(dataset, rel, "unparsable_name", str(exc))
                continue
            attributes = {**attributes, "sequence_position": index, "sequence_length": len(files)}
            if index == 0 and first_neutral:
                yield FileSpec(path, "neutral", "0 (first frame)", subject, None, frame, attributes)
            elif index >= peak_start and label is not None:
                yield FileSpec(path, label, str(code), subject, None, frame, attributes)
            elif index >= peak_start:
                reason, _, detail = why.partition(": ")
                yield Reject(dataset, rel, reason, detail or f"no usable label for {seq.name}")
            else:
                yield Reject(dataset, rel, "intermediate_frame",
                             f"frame {index + 1} of {len(files)} is between onset and peak")
