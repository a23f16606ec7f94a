"""RAVDESS: `Actor_01/02-01-07-02-01-01-01.mp4`, seven two-digit fields in the file name
(modality, vocal channel, emotion, intensity, statement, repetition, actor). Each video becomes
its de-duplicated sampled frames (see fer_data.frames)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from fer_data.frames import ClipFrames, FrameOptions, VideoError, extract_frames, ffmpeg_binary
from fer_data.images import encode_png
from fer_data.labels import RAVDESS_CODES
from fer_data.readers.base import ReadOptions, Record, Reject, Scan, is_ignored, relpath, walk_files

NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
MEDIA_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".wav"})
MODALITY = {1: "audio_video", 2: "video_only", 3: "audio_only"}
CHANNEL = {1: "speech", 2: "song"}
INTENSITY = {1: "normal", 2: "strong"}
STATEMENT = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}


def parse_ravdess_name(stem: str) -> dict[str, Any]:
    """`02-01-07-02-01-01-01` -> its attributes; ValueError (unparsable) or LookupError
    (a code outside the documented values) otherwise."""
    match = NAME.match(stem)
    if not match:
        raise ValueError(f"{stem!r} is not a RAVDESS name like 02-01-07-02-01-01-01")
    modality, channel, emotion, intensity, statement, repetition, actor = map(int, match.groups())
    tables = [(MODALITY, modality, "modality"), (CHANNEL, channel, "vocal channel"),
              (RAVDESS_CODES, emotion, "emotion"), (INTENSITY, intensity, "intensity"),
              (STATEMENT, statement, "statement")]
    for table, code, what in tables:
        if code not in table:
            raise LookupError(f"{what} code {code:02d} is not one of {sorted(table)}")
    if not 1 <= actor <= 24 or repetition not in (1, 2):
        raise LookupError(f"actor {actor:02d} / repetition {repetition:02d} out of range")
    return {
        "modality": MODALITY[modality],
        "vocal_channel": CHANNEL[channel],
        "emotion": RAVDESS_CODES[emotion],
        "emotion_code": f"{emotion:02d}",
        "intensity": INTENSITY[intensity],
        "statement": statement,
        "repetition": repetition,
        "actor": actor,
        "gender": "male" if actor % 2 else "female",
    }


@dataclass
class RavdessReader:
    name: str = "ravdess"
    layout: str = "Actor_01/02-01-07-02-01-01-01.mp4 (modality-channel-emotion-intensity-" \
                  "statement-repetition-actor)"

    def detect(self, root: Path) -> bool:
        return any(NAME.match(p.stem) for p in self._media(root))

    @staticmethod
    def _media(root: Path) -> list[Path]:
        return [p for p in walk_files(root)
                if p.suffix.lower() in MEDIA_SUFFIXES and not is_ignored(p)]

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan:
        media = self._media(root)

        def outcomes() -> Iterator[Record | Reject]:
            videos: list[tuple[Path, dict]] = []
            for path in media:
                rel = relpath(path, root)
                try:
                    attributes = parse_ravdess_name(path.stem)
                except ValueError as exc:
                    yield Reject(dataset, rel, "unparsable_name", str(exc))
                    continue
                except LookupError as exc:
                    yield Reject(dataset, rel, "unknown_label", str(exc))
                    continue
                if attributes["modality"] == "audio_only" or path.suffix.lower() == ".wav":
                    yield Reject(dataset, rel, "audio_only", "modality 03 has no video")
                    continue
                videos.append((path, attributes))
            binary = ffmpeg_binary()
            with ThreadPoolExecutor(options.workers or 4) as pool:  # ffmpeg runs out of process
                results = pool.map(lambda v: _extract(v[0], options.frames, binary), videos)
                for (path, attributes), clip in zip(videos, results, strict=True):
                    yield from self._clip_outcomes(path, attributes, clip, root, dataset)

        return Scan([relpath(p, root) for p in media], outcomes())

    def _clip_outcomes(self, path, attributes, clip, root, dataset) -> Iterator[Record | Reject]:
        rel = relpath(path, root)
        if isinstance(clip, VideoError):
            yield Reject(dataset, rel, "corrupt_video", str(clip))
            return
        for frame in clip.kept:
            height, width = frame.pixels.shape
            yield Record(
                dataset=dataset, source_path=rel, label=attributes["emotion"],
                original_label=attributes["emotion_code"], image=encode_png(frame.pixels),
                width=width, height=height, subject_id=f"ravdess:{attributes['actor']:02d}",
                frame_index=frame.index,
                attributes={**attributes, "time_ms": frame.time_ms, "phash": frame.phash,
                            "frames_sampled": clip.sampled},
            )
        for frame, kept_index, distance in clip.dropped:
            yield Reject(dataset, rel, "redundant_frame",
                         f"frame {frame.index} ({frame.time_ms} ms) is within {distance} bits "
                         f"of kept frame {kept_index}")


def _extract(path: Path, options: FrameOptions, binary: str) -> ClipFrames | VideoError:
    try:
        return extract_frames(path, options, binary)
    except VideoError as exc:
        return exc
