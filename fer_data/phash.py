"""Perceptual hashes (pHash), bit-identical to `imagehash.phash`, computed for a whole batch at
once. imagehash resizes each image to 32x32 with PIL's Lanczos filter, takes a 2-D DCT and
compares the low 8x8 frequencies with their median; here the resize is PIL's own fixed-point
Lanczos arithmetic written as two matrix products, so a batch of same-size images costs a few
BLAS calls instead of thousands of Python round trips."""

from __future__ import annotations

import math
from collections import defaultdict
from functools import lru_cache
from typing import Sequence

import numpy as np
import scipy.fftpack
from PIL import Image

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4
_SIDE = HASH_SIZE * HIGHFREQ_FACTOR
_PRECISION_BITS = 22  # PIL's Resample.c: 32 - 8 - 2
_CHUNK = 1024  # images per GEMM: keeps the float64 buffers in cache
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _lanczos(x: float) -> float:
    def sinc(v: float) -> float:
        return 1.0 if v == 0 else math.sin(math.pi * v) / (math.pi * v)

    return sinc(x) * sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


@lru_cache(maxsize=64)
def _lanczos_matrix(in_size: int, out_size: int) -> np.ndarray:
    """PIL's integer Lanczos coefficients (precompute_coeffs + normalize_coeffs_8bpc) as a
    dense (out_size, in_size) matrix, stored as float64 (exact: |k| < 2**23)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    matrix = np.zeros((out_size, in_size), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [_lanczos((x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
        total = sum(weights)
        for x, w in enumerate(weights):
            k = (w / total if total else w) * (1 << _PRECISION_BITS)
            matrix[xx, xmin + x] = int(k - 0.5) if k < 0 else int(k + 0.5)
    return matrix


def _clip8(acc: np.ndarray) -> np.ndarray:
    """PIL's clip8: add half, arithmetic shift right, clamp to 0..255. On exact integers held
    in float64, floor((acc + half) / 2**22) is the same shift."""
    acc += 1 << (_PRECISION_BITS - 1)
    acc *= 1.0 / (1 << _PRECISION_BITS)
    np.floor(acc, out=acc)
    return np.clip(acc, 0, 255, out=acc)


def lanczos_resize(batch: np.ndarray, side: int) -> np.ndarray:
    """Resize (N, H, W) uint8 images to (N, side, side) exactly as PIL's LANCZOS does:
    a horizontal pass rounded to 8 bits, then a vertical pass. Sums stay below 2**53, so
    float64 BLAS products are exact."""
    n, height, width = batch.shape
    # both passes as single 2-D GEMMs: (N*H, W) x (W, side), then (N*side, H) x (H, side)
    flat = batch.reshape(n * height, width).astype(np.float64)
    rows = _clip8(flat @ _lanczos_matrix(width, side).T).reshape(n, height, side)
    cols = rows.transpose(0, 2, 1).reshape(n * side, height)
    out = _clip8(cols @ _lanczos_matrix(height, side).T).reshape(n, side, side)
    return out.transpose(0, 2, 1).astype(np.uint8)


def to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    """Gray uint8 pixels the way PIL's convert("L") makes them (as imagehash sees an image)."""
    if isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.uint8:
        return image
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return np.asarray(image.convert("L"))


def phash_batch(images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
    """64-bit pHashes of many images as int64 (the top bit is imagehash's first bit)."""
    grays = [to_gray(im) for im in images]
    small = np.empty((len(grays), _SIDE, _SIDE), np.uint8)
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, g in enumerate(grays):
        by_shape[g.shape].append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), _CHUNK):
            part = indices[start:start + _CHUNK]
            small[part] = lanczos_resize(np.stack([grays[i] for i in part]), _SIDE)
    bits = np.concatenate([_low_frequency_bits(small[i:i + _CHUNK].astype(np.float64))
                           for i in range(0, len(small), _CHUNK)] or [np.zeros((0, 64), bool)])
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64).view(np.int64)


@lru_cache(maxsize=1)
def _dct_rows() -> np.ndarray:
    """The first HASH_SIZE rows of scipy.fftpack's unnormalised DCT-II matrix."""
    k = np.arange(HASH_SIZE)[:, None]
    n = np.arange(_SIDE)[None, :]
    return 2 * np.cos(np.pi * k * (2 * n + 1) / (2 * _SIDE))


def _low_frequency_bits(small: np.ndarray) -> np.ndarray:
    """imagehash's bits: low 8x8 DCT coefficients above their median. Only those 64 of the
    1,024 coefficients are computed (two small GEMMs). The result differs from imagehash's FFT
    in the last float bits, which matters only when a coefficient sits on the median (flat
    images): those images are recomputed with imagehash's own scipy.fftpack calls."""
    n = len(small)
    rows = _dct_rows()
    half = (small.reshape(n * _SIDE, _SIDE) @ rows.T).reshape(n, _SIDE, HASH_SIZE)
    low = np.einsum("ki,nij->nkj", rows, half).reshape(n, -1)
    median = np.median(low, axis=1, keepdims=True)
    scale = np.abs(low).max(axis=1, keepdims=True) + 1.0
    unsure = (np.abs(low - median) < 1e-9 * scale).any(axis=1)
    if unsure.any():
        exact = scipy.fftpack.dct(scipy.fftpack.dct(small[unsure], axis=1), axis=2)
        low[unsure] = exact[:, :HASH_SIZE, :HASH_SIZE].reshape(int(unsure.sum()), -1)
        median[unsure] = np.median(low[unsure], axis=1, keepdims=True)
    return low > median


def to_hex(value: int) -> str:
    """The hex string imagehash prints for the same hash."""
    return f"{int(np.int64(value).view(np.uint64)):016x}"


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bitwise Hamming distance between int64 hashes (broadcasts)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
    return _POPCOUNT[x[..., None].view(np.uint8)].sum(axis=-1)


def quarter_hashes(images: np.ndarray, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """A pHash-style 64-bit hash of each quarter of each square image (n, s, s) (top-left,
    top-right, bottom-left, bottom-right: the low 8x8 DCT frequencies of the quarter against
    their median), as (n, 4) int64, and the same of every mirror image. A band of overlaid text
    crosses two or three quarters at most, so the copy of a watermarked face keeps at least one
    quarter's hash nearly unchanged. The mirror's coefficients are the quarter's own with the
    odd horizontal frequencies negated, the quarters swapped left for right."""
    n, side = len(images), images.shape[1]
    half = side // 2
    k = np.arange(HASH_SIZE)[:, None]
    rows = np.cos(np.pi * k * (2 * np.arange(half)[None, :] + 1) / (2 * half)).astype(np.float32)
    flip = np.where(np.arange(HASH_SIZE) % 2, -1, 1).astype(np.float32)[None, None, None, :]
    out = np.zeros((2, n, 4), np.int64)
    for start in range(0, n, block):
        x = images[start:start + block].astype(np.float32)
        m = len(x)
        quarters = x.reshape(m, 2, half, 2, half).transpose(0, 1, 3, 2, 4).reshape(
            m * 4, half, half)
        low = (rows @ quarters @ rows.T).reshape(m, 4, HASH_SIZE, HASH_SIZE)
        for j, coefficients in enumerate((low, (low * flip)[:, [1, 0, 3, 2]])):
            flat = coefficients.reshape(m, 4, -1)
            bits = flat > np.median(flat, axis=2, keepdims=True)  # packed as phash_batch's
            out[j, start:start + m] = np.packbits(bits, axis=2).view(">u8")[..., 0]
    return out[0], out[1]
