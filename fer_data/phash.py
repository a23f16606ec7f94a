"""Perceptual hashes (pHash), bit-identical to `imagehash.phash`, computed for a whole batch at
once: PIL does the per-image resize, one scipy DCT call does the rest."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.fftpack
from PIL import Image

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4
_SIDE = HASH_SIZE * HIGHFREQ_FACTOR
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _small(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return np.asarray(image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS))


def phash_batch(images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
    """64-bit pHashes of many images as int64 (bit 63 = imagehash's first bit)."""
    if len(images) == 0:
        return np.zeros(0, dtype=np.int64)
    pixels = np.stack([_small(im) for im in images])  # (N, 32, 32) uint8
    # same operation order and dtype as imagehash: DCT over rows of columns, on float64
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)
    low = dct[:, :HASH_SIZE, :HASH_SIZE].reshape(len(images), -1)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64).view(np.int64)


def to_hex(value: int) -> str:
    """The hex string imagehash prints for the same hash."""
    return f"{int(np.int64(value).view(np.uint64)):016x}"


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bitwise Hamming distance between int64 hashes (broadcasts)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
    return _POPCOUNT[x[..., None].view(np.uint8)].sum(axis=-1)
