"""Decoding source images into the lossless form every table stores (PNG bytes)."""

from __future__ import annotations

import io
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"}
)

# Below this many files a process pool costs more to start than it saves.
PARALLEL_MIN = 2000
# Decoding refuses images of more pixels than this (reject `too_large`), read from the header
# before any pixel is decoded: 40 megapixels is more than any expression dataset's photos
# (KDEF 562x762, RAF-DB/AffectNet originals a few megapixels) and well under what a worker can
# hold. PIL's own bomb check stays on as a second guard.
MAX_PIXELS = 40_000_000


class BadImage(ValueError):
    """A file that cannot be decoded; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Encoded:
    png: bytes
    width: int
    height: int
    offset: tuple[int, int] = (0, 0)  # the stored image's top-left corner in the file's pixels

# a part of an image to keep: x1, y1, x2, y2 in the file's pixels (cut to the image's bounds)
Region = tuple[float, float, float, float]


def normalize_mode(image: Image.Image) -> Image.Image:
    """Gray stays gray (palette and 16-bit gray become 8-bit L, as in some JAFFE TIFFs);
    colour becomes RGB, or L when all three channels are equal."""
    if image.mode == "L":
        return image
    if image.mode in ("1", "I;16", "I;16B", "I", "F"):
        return _to_8bit_gray(image)
    rgb = image.convert("RGB")
    arr = np.asarray(rgb)
    if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
        return Image.fromarray(arr[..., 0])
    return rgb


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    arr = np.asarray(image, dtype=np.float64)
    if image.mode == "1":
        return Image.fromarray((arr * 255).astype(np.uint8))
    hi = arr.max()
    scale = 255.0 / hi if hi > 255 else 1.0
    return Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8))


def encode_png(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes back to a uint8 array (H, W) or (H, W, 3)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def load_file(path: str | os.PathLike, max_pixels: int = MAX_PIXELS,
              region: Region | None = None) -> Encoded:
    """Decode one image file fully (truncation is caught here, not later) and re-encode it,
    or only `region` of it (a face with its context, where a dataset gives several faces per
    photograph). Every way a file can fail becomes a BadImage with a reason: it cannot be
    opened (`unreadable`: a broken link, a file gone since listing, no permission, a folder),
    is no image, is truncated or corrupt, is too large, or the region lies outside it
    (`bad_box`)."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise BadImage("too_large", f"{im.width}x{im.height} pixels, over the limit of "
                               f"{max_pixels:,} (ReadOptions.max_pixels)")
            im.load()
            im = normalize_mode(im)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage("too_large", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise BadImage("not_an_image", str(exc)) from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        raise BadImage("unreadable", f"{type(exc).__name__}: {exc}") from exc
    except (OSError, SyntaxError, ValueError, MemoryError) as exc:
        raise BadImage("corrupt_image", f"{type(exc).__name__}: {exc}") from exc
    offset = (0, 0)
    if region is not None:
        x1, y1 = max(int(region[0]), 0), max(int(region[1]), 0)
        x2, y2 = min(int(math.ceil(region[2])), im.width), min(int(math.ceil(region[3])),
                                                                im.height)
        if x2 - x1 < 8 or y2 - y1 < 8:
            raise BadImage("bad_box", f"the face box {[round(v, 1) for v in region]} (with "
                           f"its context) lies outside the {im.width}x{im.height} image")
        im, offset = im.crop((x1, y1, x2, y2)), (x1, y1)
    if im.width < 8 or im.height < 8:
        raise BadImage("too_small", f"{im.width}x{im.height} pixels")
    return Encoded(encode_png(im), im.width, im.height, offset)


def safe_load(path: str | os.PathLike, max_pixels: int = MAX_PIXELS,
              region: Region | None = None) -> Encoded | BadImage:
    """load_file at the per-file boundary: nothing one file does stops the others."""
    try:
        return load_file(path, max_pixels, region)
    except BadImage as exc:
        return exc
    except Exception as exc:  # anything else a decoder raises, reported with its type
        return BadImage("unreadable", f"{type(exc).__name__}: {exc}")


def load_many(paths: list[Path], workers: int | None = None, max_pixels: int = MAX_PIXELS,
              regions: list[Region | None] | None = None) -> Iterator[Encoded | BadImage]:
    """`load_file` over many files, in order; failures come back as `BadImage` values rather
    than stopping the batch. Large batches use a process pool: decoding a 48x48 JPEG is mostly
    Python overhead, which threads cannot spread over cores."""
    workers = workers or os.cpu_count() or 1
    limits = [max_pixels] * len(paths)
    regions = regions or [None] * len(paths)
    if workers < 2 or len(paths) < PARALLEL_MIN:
        yield from map(safe_load, paths, limits, regions)
        return
    context = multiprocessing.get_context("spawn")  # safe inside threaded hosts like Dagster
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(safe_load, paths, limits, regions, chunksize=256)
