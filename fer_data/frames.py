"""Video frames: decode with ffmpeg (through ffmpeg-python) at a fixed sampling rate, streamed
through a pipe, and drop frames that a perceptual hash says repeat the last kept one."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import ffmpeg
import numpy as np

from fer_data.detectors import Face, HaarDetector
from fer_data.faces import CropOptions, align_and_crop, choose_face
from fer_data.phash import hamming, phash_batch

_LOCATE_HEIGHT = 180
_SIZE = re.compile(r"Video:.*?\b(\d{2,5})x(\d{2,5})\b")


class VideoError(RuntimeError):
    """ffmpeg could not decode the file; the message is ffmpeg's own."""


@dataclass(frozen=True)
class FrameOptions:
    fps: float = 5.0
    skip_ms: int = 0
    max_height: int = 360  # frames are downscaled to this height (never upscaled)
    hash_threshold: int = 4  # drop a frame within this many pHash bits of the last kept one
    hash_face: bool = True  # hash the face (found by a Haar cascade) rather than the whole frame


@dataclass
class Frame:
    index: int  # position among the sampled frames
    time_ms: int
    pixels: np.ndarray  # gray uint8 (H, W)
    phash: int


@dataclass
class ClipFrames:
    kept: list[Frame]
    dropped: list[tuple[Frame, int, int]]  # (frame, index of the kept frame it repeats, distance)
    sampled: int


def ffmpeg_binary() -> str:
    """System ffmpeg when installed, else the binary shipped in imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def video_size(path: Path, binary: str | None = None) -> tuple[int, int]:
    """(width, height) of the first video stream, read from ffmpeg's stream listing."""
    proc = subprocess.run([binary or ffmpeg_binary(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True, errors="replace")
    match = _SIZE.search(proc.stderr)
    if not match:
        raise VideoError(_last_lines(proc.stderr) or "no video stream found")
    return int(match.group(1)), int(match.group(2))


def decode_frames(path: Path, options: FrameOptions, binary: str | None = None) -> list[np.ndarray]:
    """Sampled gray frames of a video, at `options.fps` after `options.skip_ms`."""
    binary = binary or ffmpeg_binary()
    width, height = video_size(path, binary)
    out_h = min(height, options.max_height)
    out_w = int(round(width * out_h / height / 2)) * 2
    stream = ffmpeg.input(str(path), ss=options.skip_ms / 1000) if options.skip_ms else \
        ffmpeg.input(str(path))
    stream = (
        stream.filter("fps", fps=options.fps)
        .filter("scale", out_w, out_h)
        .output("pipe:", format="rawvideo", pix_fmt="gray")
        .global_args("-hide_banner", "-loglevel", "error", "-nostdin")
    )
    try:
        data, err = stream.run(cmd=binary, capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        raise VideoError(_last_lines(exc.stderr.decode(errors="replace"))) from None
    n = len(data) // (out_w * out_h)
    if n == 0:
        raise VideoError(_last_lines(err.decode(errors="replace")) or "no frames decoded")
    return list(np.frombuffer(data[: n * out_w * out_h], np.uint8).reshape(n, out_h, out_w))


def frame_hashes(frames: list[np.ndarray], locate_face: bool) -> np.ndarray:
    """pHash per frame: of the face crop when a face is found (a face is a small part of the
    frame, so whole-frame hashes barely see an expression change), else of the whole frame.
    The face is located by a Haar cascade on a 180 px high copy: cheap, and plenty for the
    large faces of expression videos."""
    if not locate_face or not frames:
        return phash_batch(frames)
    scale = min(1.0, _LOCATE_HEIGHT / frames[0].shape[0])
    small = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
             for f in frames]
    found = HaarDetector(scale_factor=1.2, min_neighbors=5, min_size=_LOCATE_HEIGHT // 5,
                         find_eyes=False).detect(small)
    regions = []
    for frame, faces in zip(frames, found, strict=True):
        face = choose_face(faces, confident_score=0.0)
        if face is None:
            regions.append(frame)
            continue
        box = tuple(v / scale for v in face.box)
        regions.append(align_and_crop(frame, Face(box, face.score), CropOptions(face_size=64)))
    return phash_batch(regions)


def dedupe_frames(frames: list[np.ndarray], options: FrameOptions) -> ClipFrames:
    """Keep a frame only when its pHash differs from the last kept frame by more than the
    threshold, so a held expression yields one frame and a changing one yields several."""
    hashes = frame_hashes(frames, options.hash_face)
    kept: list[Frame] = []
    dropped: list[tuple[Frame, int, int]] = []
    step_ms = 1000.0 / options.fps
    for i, (pixels, h) in enumerate(zip(frames, hashes, strict=True)):
        frame = Frame(i, int(round(options.skip_ms + i * step_ms)), pixels, int(h))
        if kept:
            distance = int(hamming(h, kept[-1].phash))
            if distance <= options.hash_threshold:
                dropped.append((frame, kept[-1].index, distance))
                continue
        kept.append(frame)
    return ClipFrames(kept, dropped, len(frames))


def extract_frames(path: Path, options: FrameOptions, binary: str | None = None) -> ClipFrames:
    """Decode and de-duplicate one clip."""
    return dedupe_frames(decode_frames(path, options, binary), options)


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])
