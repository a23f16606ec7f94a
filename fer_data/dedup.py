"""De-duplication across all datasets: exact and near duplicates found from keys that do not
depend on how a dataset was cropped or how an export was processed, clusters, label conflicts
and a low-information filter.

The keys (`source_keys`, `crop_keys`) are computed per face by the faces stage:
- `source_digest`: a hash of the decoded source pixels in gray, so the same file is an exact
  duplicate whichever dataset folder it arrives in and whatever face policy that folder has;
- pHashes, each also of the mirror image, of the face crop (`phash`), of the source image as
  stored (`source_phash`) and of its histogram-equalized form (`source_phash_eq`): copies from
  exports that were processed differently (one equalized, one not, gamma, re-encoded) agree after
  equalization, which any global monotone contrast change leaves almost untouched;
- `source_thumb`: a 32x32 thumbnail of the equalized source, to verify the wider second tier.

Two faces are duplicates when their source digests are equal, when the crop or stored-source
pHashes are within `threshold` bits or the equalized ones within `eq_threshold` (mirrors
included) and their thumbnails correlate at `hash_correlation` (hashes that near also join
different people; below it such a pair is a tier-2 candidate), or when one is among the
other's `verify_neighbours` most correlated faces outside its tier-1 cluster (neighbours.py:
an inverted file over projected thumbnails, whatever happened to the hashes) and their
thumbnails correlate at `min_correlation` or more (tier 2, `verified`: copies whose hash moved
further, verified by the pixels so that look-alike faces of different people stay apart), or,
for the candidates that correlate at `robust_floor` or more but less than `min_correlation`,
when the thumbnails still correlate at `robust_correlation` over the 80% of
pixels where they agree best (tier 2, `robust`): a stock-photo watermark written over one copy, a
local contrast change (CLAHE) or a posterized export disagree in a minority of pixels, which a
plain correlation cannot ignore (FER2013's own watermarked repeats correlate at 0.87-0.90). The
robust tier only joins faces with the same label (one person's two expressions in one framing
also differ in a minority of pixels: the mouth, the eyes) whose hashes are not far apart
(`robust_radius`, or one thumbnail quarter within `robust_quarter_radius`): ignoring a fifth of
the pixels, it would otherwise join some look-alike faces of different people. Under the same
two gates, a candidate that correlates at `band_floor` or more is also confirmed when its
thumbnails correlate at `min_correlation` outside the one straight band, `band_width` pixels
wide at -30..30 degrees, where they differ most (tier 2, `band`): an opaque line of watermark
text over one copy changes a band of the face and, through the equalization, the contrast of
the rest, more than the robust correlation forgives (bench/leaks.py: a real FER2013 face under
"depositphotos" at alpha 0.39 correlates at 0.79 plain, 0.950 robust, 0.957 outside its band,
where the next of 21,738 same-label candidates reaches 0.938). Last, a same-label candidate
that correlates at `registered_floor` or more and that all of the above left in another cluster
is confirmed when the thumbnails correlate at `registered_correlation` once the one is aligned
onto the other by a shift and a scale per axis of a few pixels (tier 2, `registered`;
registration.py; between two clusters only the 4 candidates with the best correlation over
whole-pixel shifts are aligned, the alignment costing milliseconds a pair): a copy shifted
or re-cropped by 1-2 px of a 48 px face correlates at a median 0.85 pixel for pixel, 0.99
aligned (2,000 real FER2013 faces), and some as little as 0.35 before. On the real FER2013
export + CK+48 it adds 2,415 pairs; the 48 least similar of those
at 0.96-0.966 and the 48 that correlate least before the alignment (0.36-0.47) are every one the
same photograph by eye, re-cropped, shifted or watermarked, a third of them across splits.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fer_data import schema
from fer_data.hash_search import (
    best_per_pair,
    clusters,
    group_pairs,
    mirrored_pairs,
    near_pairs,
    popcount64,
    unique_pairs,
)
from fer_data.neighbours import Thumbs, mirrored, neighbour_pairs
from fer_data.phash import phash_batch, quarter_hashes, to_gray
from fer_data.registration import registered_correlation, shifted_correlation

# The split a duplicate cluster keeps when its members came from different splits.
SPLIT_PROTECTION = {"test": 3, "val": 2, "train": 1, None: 0}
HASH_KINDS = ("phash", "source_phash", "source_phash_eq")  # each with a `<kind>_mirror` column
THUMB_SIDE = 32
ROBUST_KEEP = 0.8  # the share of best-agreeing thumbnail pixels the robust correlation uses
BAND_ANGLES = range(-30, 31, 6)  # degrees from horizontal of the bands the band tier tries
BAND_STEP = 2  # thumbnail pixels between two parallel bands
INFO_BAND = 10  # the width of the band pixel_std leaves out (a line of text at 48 px)
# tier-2 candidates: a neighbour's projected score may fall this far below the lower floor
# (min_correlation or robust_floor); on 36,868 real faces (robust tier without its hash gate)
# the 8 nearest at 0.15 below left 11 faces outside the clusters that verifying all 680M pairs
# makes, hash balls of radius 12 132
NEIGHBOUR_MARGIN = 0.15
# ... and at most this many candidates, the best-scoring, between two tier-1 clusters: at a
# million faces with dozens of copies each, every copy of one face is near every copy of its
# look-alike, and one verified pair merges them
PER_CLUSTER_PAIR = 8
REGISTERED_PER_CLUSTER_PAIR = 4  # ... of which the registered tier aligns the best this many
# (100k faces of the stress set, ranked by plain correlation: 2 left 49 planted copies apart,
# 4 43; ranked by the best correlation over whole-pixel shifts, at 1M, 335 instead of 469)
REGISTERED_BORDER = 3  # thumbnail pixels the registered correlation leaves out at each edge
DEDUP_METADATA = "fer_data.dedup"  # Parquet key of the options face_index ran with
PAIRS_METADATA = "fer_data_counts.duplicate_pairs"  # ... and of the pairs each key found
# what each key of duplicate_pairs finds, in the words of the dataset card
KEY_KINDS = {
    "exact": "the same decoded pixels",
    "phash": "near-identical face crops",
    "source_phash": "near-identical source images (re-encoded, resized)",
    "source_phash_eq": "the same picture after equalization (contrast, gamma)",
    "verified": "verified by the pixels (further processed copies)",
    "robust": "verified where most pixels agree (watermarks, local contrast, posterized)",
    "band": "verified outside one band (a line of watermark text)",
    "registered": "verified after aligning a shift or re-crop of a few pixels",
}
TIER2_KEYS = ("verified", "robust", "band", "registered")
KEY_COLUMNS = [*(c for k in HASH_KINDS for c in (k, f"{k}_mirror")), "source_digest",
               "source_thumb"]
# what face_index reads of every face_crops table
INDEX_COLUMNS = ["image_id", "dataset", "source_path", "label", "subject_id", "official_split",
                 "pixel_std", *KEY_COLUMNS]


def pixel_digest(gray: np.ndarray) -> str:
    """Hash of decoded pixels: the same picture saved as another PNG or lossless file, or
    parsed from a CSV, gives the same digest."""
    return hashlib.sha1(gray.tobytes() + str(gray.shape).encode()).hexdigest()[:16]


def _mirror(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(im[:, ::-1]) for im in images]


def crop_keys(crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """pHash of each face crop and of its mirror image, and its `pixel_std`."""
    return {"phash": phash_batch(crops), "phash_mirror": phash_batch(_mirror(crops)),
            "pixel_std": pixel_std(crops)}


def pixel_std(crops: Sequence[np.ndarray], block: int = 4096) -> np.ndarray:
    """The pixel standard deviation of each gray face crop outside its most varied straight
    band (`_bands(INFO_BAND)` on a 32x32 resize), the low-information measure: near 0 for a
    near-uniform picture and for a line of text or a mark on a blank one, which FER2013 and
    watermarked copies of its blank pictures hold (its "...moved or deleted this image"
    placeholders: 0.1-1.5; every real face of FER2013 + CK+48: 26 or more)."""
    bands = _bands(INFO_BAND).T.astype(np.float64)
    count = THUMB_SIDE * THUMB_SIDE - bands.sum(axis=0)
    out = np.zeros(len(crops), np.float32)
    for start in range(0, len(crops), block):
        t = np.stack([cv2.resize(c, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)
                      for c in crops[start:start + block]]).reshape(-1, THUMB_SIDE ** 2)
        t = t.astype(np.float64)
        mean = (t.sum(1, keepdims=True) - t @ bands) / count
        var = ((t * t).sum(1, keepdims=True) - (t * t) @ bands) / count - mean * mean
        out[start:start + block] = np.sqrt(np.maximum(var.min(axis=1), 0.0))
    return out


def source_keys(sources: Sequence[np.ndarray]) -> dict[str, list | np.ndarray]:
    """The crop-independent keys of each source image (any size, gray or RGB)."""
    grays = [to_gray(s) for s in sources]
    equalized = [cv2.equalizeHist(g) for g in grays]
    return {
        "source_digest": [pixel_digest(g) for g in grays],
        "source_phash": phash_batch(grays),
        "source_phash_mirror": phash_batch(_mirror(grays)),
        "source_phash_eq": phash_batch(equalized),
        "source_phash_eq_mirror": phash_batch(_mirror(equalized)),
        "source_thumb": [cv2.resize(e, (THUMB_SIDE, THUMB_SIDE),
                                    interpolation=cv2.INTER_AREA).tobytes() for e in equalized],
    }


@dataclass(frozen=True)
class DedupOptions:
    threshold: int = 4  # pHash radius for a near duplicate: crop and stored-source hashes
    # the same for the equalized-source hash; beyond it only verified (tier 2). Tuned on real
    # FER2013 + CK+48 + a repackage (bench/leaks.py): at 4, pairs of different people joined
    eq_threshold: int = 2
    # ... and near-hash pairs (not byte-identical ones) join only where their thumbnails
    # correlate at this or more (0: the hashes alone); below it a pair is a tier-2 candidate
    # like any other. Hashes that near can belong to different people: on real FER2013 +
    # CK+48, 62 of the 5,426 crop-hash pairs correlate under 0.8, every one of the lowest 36
    # two different pictures by eye, while nearly all at 0.8-0.9 are one picture (FER2013's
    # repeats, some under conflicting labels). Off by default: in bench/leaks.py at 0.8, 16
    # rather than 2 of 37,758 planted contrast-changed and re-encoded copies were missed (JPEG
    # noise, equalized, lowers their correlation to 0.57-0.79) and 4 training rows had a
    # val/test twin within 2 bits of imagehash (0 without); at 0.9, 30 missed. At a million
    # faces (bench/scale.py, 26 copies of each picture) the hashes alone chain 2,882 pictures
    # into one cluster, and 0.9 breaks that chain, at the price above
    hash_correlation: float = 0.0
    include_flips: bool = True
    verify_neighbours: int = 16  # tier 2: each face's most thumbnail-correlated faces outside
    # its tier-1 cluster that are verified (and as many of its mirror image's; 0: no tier 2).
    # Real FER2013 + CK+48: 31,817 clusters in 6.1 s, where the hash balls of radius 12 (and
    # quarter hashes within 8) made 31,806 in 16.5 s (both one thread beside a training run):
    # 13 of their merges missed, 2 new
    min_correlation: float = 0.95  # tier 2: thumbnail correlation that confirms a candidate
    # tier 2, robust: a candidate correlating at robust_floor..min_correlation is confirmed when
    # its ROBUST_KEEP best-agreeing pixels correlate at robust_correlation (0.96 joined a few
    # different people in real FER2013 candidates, 0.97 none seen: bench/leaks.py)
    robust_correlation: float = 0.97
    robust_floor: float = 0.8
    # ... and when their equalized pHashes lie within robust_radius bits or one quarter of their
    # thumbnails hashes within robust_quarter_radius (a watermark band moves the whole-face hash
    # by up to 20 bits but leaves one quarter alone): the trimmed correlation ignores a fifth of
    # the pixels, and without this gate it joined some look-alike faces of different people
    robust_radius: int = 12
    robust_quarter_radius: int = 8
    # tier 2, band: a candidate correlating at band_floor or more (same label, hashes near as
    # above) is confirmed when it correlates at min_correlation outside its most different
    # band this many thumbnail pixels wide (bench/leaks.py: at 8-12 the one watermarked copy
    # the robust tier missed is the best of 21,738 same-label candidates; at 6 it is not)
    band_width: int = 10
    band_floor: float = 0.75
    # tier 2, registered: a same-label candidate correlating at registered_floor or more whose
    # cluster the other tiers left apart from its own is confirmed when its thumbnails
    # correlate at registered_correlation once aligned by a shift of at most registered_shift
    # thumbnail pixels and a scale within 1 +- registered_scale per axis (above 1: off). At
    # 0.96 every one of a random 48 pairs it joined in real FER2013 + CK+48 is the same
    # photograph by eye; at 0.95-0.96 a few are doubtful (bench/leaks.py). A floor of 0.35
    # rather than 0.5 joins 86 more real pairs (all same photographs by eye) and, in 100k faces
    # of the 1M stress set, leaves 4 planted copies apart rather than 9
    registered_floor: float = 0.35
    registered_correlation: float = 0.96
    registered_shift: float = 3.0
    registered_scale: float = 0.12
    conflict_policy: Literal["drop_all", "keep_majority"] = "keep_majority"
    min_std: float = 4.0  # below this pixel_std (outside the most varied band) an image is
    # near-uniform or a line of text on a blank picture: low_information
    # which dataset's copy a cluster keeps, first preferred (the registry's keeper ranks:
    # fer_data.datasets.keeper_priority); unlisted datasets come last
    dataset_priority: tuple[str, ...] = ()


def dedup_options(index: pa.Table) -> DedupOptions:
    """The options a face_index table was built with (from its Parquet metadata), so later
    stages use the very same settings instead of a second copy that could disagree."""
    raw = (index.schema.metadata or {}).get(DEDUP_METADATA.encode())
    if raw is None:
        raise ValueError("face_index has no recorded de-duplication settings: materialize "
                         "face_index again")
    values = json.loads(raw)
    values["dataset_priority"] = tuple(values["dataset_priority"])
    return DedupOptions(**values)


def _hashes(keys: pa.Table, column: str) -> np.ndarray:
    return np.asarray(keys.column(column).to_numpy(zero_copy_only=False), dtype=np.int64)


def thumbnails(keys: pa.Table) -> Thumbs:
    column = keys.column("source_thumb")
    parts = []
    for chunk in column.chunks:  # the values buffer as it is: no million bytes objects
        offsets = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk) + 1, chunk.offset * 4)
        if len(chunk) and np.any(np.diff(offsets) != THUMB_SIDE * THUMB_SIDE):
            raise ValueError("face_crops source_thumb values are not all "
                             f"{THUMB_SIDE}x{THUMB_SIDE}: materialize face_crops again")
        parts.append(np.frombuffer(chunk.buffers()[2], np.uint8)[offsets[0]:offsets[-1]])
    pixels = (np.concatenate(parts) if parts else np.zeros(0, np.uint8)).reshape(
        keys.num_rows, THUMB_SIDE * THUMB_SIDE)
    mean, inv_std = np.zeros(len(pixels), np.float32), np.zeros(len(pixels), np.float32)
    for start in range(0, len(pixels), 65536):
        block = pixels[start:start + 65536].astype(np.float32)
        mean[start:start + 65536] = block.mean(axis=1)
        std = block.std(axis=1)
        inv_std[start:start + 65536] = np.divide(1.0, std, out=np.zeros_like(std),
                                                 where=std > 1e-3)
    return Thumbs(pixels, mean, inv_std)


def correlation(thumbs: Thumbs, pairs: np.ndarray, block: int = 32768) -> np.ndarray:
    """Thumbnail correlation of each pair, the better of as-is and mirrored."""
    out = np.zeros(len(pairs), np.float32)
    for start in range(0, len(pairs), block):
        part = pairs[start:start + block]
        a, b = thumbs.standard(part[:, 0]), thumbs.standard(part[:, 1])
        out[start:start + block] = np.maximum(np.einsum("ij,ij->i", a, b),
                                              np.einsum("ij,ij->i", a, mirrored(b, THUMB_SIDE))
                                              ) / a.shape[1]
    return out


def _trimmed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of each row pair over the ROBUST_KEEP of pixels where the standardized
    images differ least."""
    diff = np.abs(a - b)
    k = int(ROBUST_KEEP * a.shape[1])
    mask = (diff <= np.partition(diff, k - 1, axis=1)[:, k - 1:k]).astype(np.float32)
    count = mask.sum(1, keepdims=True)
    a = (a - (a * mask).sum(1, keepdims=True) / count) * mask
    b = (b - (b * mask).sum(1, keepdims=True) / count) * mask
    return np.einsum("ij,ij->i", a, b) / np.sqrt(
        np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b) + 1e-9)


def robust_correlation(thumbs: Thumbs, pairs: np.ndarray, block: int = 8192) -> np.ndarray:
    """The trimmed thumbnail correlation of each pair (`_trimmed`), the better of as-is and
    mirrored."""
    out = np.zeros(len(pairs), np.float32)
    for start in range(0, len(pairs), block):
        part = pairs[start:start + block]
        a, b = thumbs.standard(part[:, 0]), thumbs.standard(part[:, 1])
        out[start:start + block] = np.maximum(_trimmed(a, b),
                                              _trimmed(a, mirrored(b, THUMB_SIDE)))
    return out


@lru_cache(maxsize=4)
def _bands(width: int) -> np.ndarray:
    """One row per straight band across a thumbnail (BAND_ANGLES x offsets BAND_STEP apart):
    1 on the pixels within width / 2 of its centre line."""
    y, x = np.mgrid[0:THUMB_SIDE, 0:THUMB_SIDE] - (THUMB_SIDE - 1) / 2
    rows = []
    for angle in np.deg2rad(np.array(BAND_ANGLES, np.float64)):
        distance = np.cos(angle) * y - np.sin(angle) * x  # from the line through the centre
        for offset in np.arange(-(THUMB_SIDE // 2) + BAND_STEP, THUMB_SIDE // 2, BAND_STEP):
            rows.append((np.abs(distance - offset) <= width / 2).ravel())
    return np.array(rows, np.float32)


def _outside_band(a: np.ndarray, b: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """Correlation of each row pair of standardized images outside the band of `bands` that
    holds most of their squared difference."""
    worst = ((a - b) ** 2 @ bands.T).argmax(axis=1)
    keep = 1.0 - bands[worst]
    count = keep.sum(1, keepdims=True)
    a = (a - (a * keep).sum(1, keepdims=True) / count) * keep
    b = (b - (b * keep).sum(1, keepdims=True) / count) * keep
    return np.einsum("ij,ij->i", a, b) / np.sqrt(
        np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b) + 1e-9)


def band_correlation(thumbs: Thumbs, pairs: np.ndarray, width: int,
                     block: int = 4096) -> np.ndarray:
    """The thumbnail correlation of each pair outside its most different band (`_bands`), the
    better of as-is and mirrored."""
    bands = _bands(width)
    out = np.zeros(len(pairs), np.float32)
    for start in range(0, len(pairs), block):
        part = pairs[start:start + block]
        a, b = thumbs.standard(part[:, 0]), thumbs.standard(part[:, 1])
        out[start:start + block] = np.maximum(_outside_band(a, b, bands),
                                              _outside_band(a, mirrored(b, THUMB_SIDE), bands))
    return out


def duplicate_pairs(keys: pa.Table, options: DedupOptions) -> dict[str, np.ndarray]:
    """Duplicate edges (i < j) by the key that found them: `exact`, each hash kind, and
    tier 2's `verified`, `robust` and `band`. `keys` holds the KEY_COLUMNS."""
    n = keys.num_rows
    found: dict[str, np.ndarray] = {}
    digests = np.array(keys.column("source_digest").to_pylist(), dtype=object)
    found["exact"] = group_pairs(np.unique(digests, return_inverse=True)[1]) if n else \
        np.zeros((0, 2), np.int64)
    thumbs = thumbnails(keys) if options.hash_correlation > 0 or options.verify_neighbours \
        else None
    for kind in HASH_KINDS:
        radius = options.eq_threshold if kind == "source_phash_eq" else options.threshold
        if kind == "phash" and _same_hashes(keys, "phash", "source_phash"):
            continue  # every face is its whole source (pre-cropped sets): the same pairs
        found[kind] = _near(keys, kind, radius, options.include_flips)
    unconfirmed = np.zeros((0, 2), np.int64)  # near hashes the thumbnails reject: tier 2 sees them
    if thumbs is not None and options.hash_correlation > 0:
        near = _unique([found[k] for k in HASH_KINDS if k in found])
        agree, unconfirmed = _thumbnails_agree(keys, thumbs, found["exact"], near, options)
        confirmed = agree[:, 0] * n + agree[:, 1]
        for kind in HASH_KINDS:
            if kind in found:
                found[kind] = found[kind][np.isin(found[kind][:, 0] * n + found[kind][:, 1],
                                                  confirmed)]
    found.setdefault("phash", found["source_phash"])
    if options.verify_neighbours:
        found.update(_verified(keys, thumbs, _unique(list(found.values())), unconfirmed,
                               options))
    return {key: found[key] for key in ("exact", *HASH_KINDS, *TIER2_KEYS)
            if key in found}


def _thumbnails_agree(keys: pa.Table, thumbs: Thumbs, exact: np.ndarray, near: np.ndarray,
                      options: DedupOptions) -> tuple[np.ndarray, np.ndarray]:
    """Of the near-hash pairs (unique, sorted), those whose thumbnails correlate at
    hash_correlation (or are both flat: they correlate with nothing, the hash decides) and
    those whose thumbnails disagree. Only pairs that could still join two clusters are checked:
    in rounds of growing size over the pairs in a seeded random order, a pair whose faces the
    exact and confirmed pairs of earlier rounds already join changes no cluster and is left
    out of both (100,000 stress faces, 26 copies of each picture: the whole index in 32 s
    instead of 45 s with every pair checked, the same clusters). Pairs of one subject's posed
    expressions, which build_index forgets, join nothing in the rounds either."""
    n = keys.num_rows
    labels = np.array(keys.column("label").to_pylist(), dtype=object) \
        if "label" in keys.column_names else np.zeros(n, object)
    subjects = keys.column("subject_id").to_pylist() if "subject_id" in keys.column_names \
        else [None] * n
    joining = [_drop_posed_expressions(exact, labels, subjects)]
    agree, disagree = np.zeros(len(near), bool), np.zeros(len(near), bool)
    flat = thumbs.inv_std == 0
    # a seeded random order: each round samples every group's pairs, whatever the row layout
    order = np.random.default_rng(0).permutation(len(near))
    start, size = 0, 1 << 16
    while start < len(near):
        part = order[start:start + size]
        cluster = clusters(n, np.concatenate(joining))
        part = part[cluster[near[part, 0]] != cluster[near[part, 1]]]
        pairs = near[part]
        ok = (correlation(thumbs, pairs) >= options.hash_correlation) \
            | (flat[pairs[:, 0]] & flat[pairs[:, 1]])
        agree[part[ok]], disagree[part[~ok]] = True, True
        joining.append(_drop_posed_expressions(pairs[ok], labels, subjects))
        start, size = start + size, size * 2
    return near[agree], near[disagree]


def _same_hashes(keys: pa.Table, a: str, b: str) -> bool:
    return all(np.array_equal(_hashes(keys, a + m), _hashes(keys, b + m)) for m in ("", "_mirror"))


def _verified(keys: pa.Table, thumbs: Thumbs, tier1: np.ndarray, unconfirmed: np.ndarray,
              options: DedupOptions) -> dict[str, np.ndarray]:
    """Tier 2: pairs of faces in different tier-1 clusters (those need no thumbnails), one
    among the other's verify_neighbours nearest (neighbours.neighbour_pairs) or with near
    hashes that tier 1 did not confirm (`unconfirmed`; at most PER_CLUSTER_PAIR per pair of
    clusters, the best by projected or plain score), whose thumbnails correlate at min_correlation
    (`verified`); or, same label and hashes near, at robust_floor and robustly at
    robust_correlation (`robust`), or else at band_floor and at min_correlation outside their
    most different band (`band`); or, same label, at registered_floor, in clusters the others
    left apart, at registered_correlation once aligned (`registered`; the best
    REGISTERED_PER_CLUSTER_PAIR per pair of those clusters by `shifted_pairs`)."""
    labels = np.array(keys.column("label").to_pylist(), dtype=object) \
        if "label" in keys.column_names else None
    if labels is not None and "subject_id" in keys.column_names:  # as build_index parts them
        tier1 = _drop_posed_expressions(tier1, labels, keys.column("subject_id").to_pylist())
    joined = clusters(keys.num_rows, tier1)
    lowest = min(options.robust_floor, options.band_floor)
    floor = min(options.min_correlation, lowest, options.registered_floor) - NEIGHBOUR_MARGIN
    candidates, score = neighbour_pairs(thumbs, joined, options.verify_neighbours, floor,
                                        options.include_flips)
    unconfirmed = unconfirmed[joined[unconfirmed[:, 0]] != joined[unconfirmed[:, 1]]]
    if len(unconfirmed):
        candidates, score = best_per_pair(
            np.concatenate([candidates, unconfirmed]),
            np.concatenate([score, correlation(thumbs, unconfirmed)]), keys.num_rows)
    candidates = _best_per_cluster_pair(candidates, score, joined)
    plain = correlation(thumbs, candidates)
    verified = plain >= options.min_correlation
    same = np.ones(len(candidates), bool) if labels is None else \
        labels[candidates[:, 0]] == labels[candidates[:, 1]]
    # one person's two expressions differ in a minority of pixels too: the robust and band
    # tiers only join faces with the same label whose hashes are near
    unsure = np.flatnonzero(~verified & same & (plain >= lowest))
    unsure = unsure[_hashes_near(keys, thumbs, candidates[unsure], options)]
    robust = unsure[plain[unsure] >= options.robust_floor]
    robust = robust[robust_correlation(thumbs, candidates[robust]) >= options.robust_correlation]
    rest = np.setdiff1d(unsure[plain[unsure] >= options.band_floor], robust)
    band = rest[band_correlation(thumbs, candidates[rest], options.band_width)
                >= options.min_correlation]
    found = {"verified": candidates[verified], "robust": candidates[robust],
             "band": candidates[band]}
    if options.registered_correlation > 1:
        return found
    # registered: the same-label candidates still in two clusters once the other tiers joined
    joined = clusters(keys.num_rows, np.concatenate([tier1, *found.values()]))
    left = np.flatnonzero(same & ~verified & (plain >= options.registered_floor)
                          & (joined[candidates[:, 0]] != joined[candidates[:, 1]]))
    # where a pair of clusters offers more candidates than are aligned, the best by a
    # shift-tolerant correlation: by plain correlation a shifted copy's origin ranked 5th or
    # lower among its other perturbed copies for 67 of 123 missed 1M-set copies (17 by this)
    rank = plain[left].copy()
    crowded = _cluster_pair_sizes(candidates[left], joined) > REGISTERED_PER_CLUSTER_PAIR
    rank[crowded] = shifted_pairs(thumbs, candidates[left[crowded]], options)
    left = left[_best_per_cluster_pair(candidates[left], rank, joined,
                                       REGISTERED_PER_CLUSTER_PAIR, positions=True)]
    score = registered_pairs(thumbs, candidates[left], options)
    found["registered"] = candidates[left[score >= options.registered_correlation]]
    return found


def registered_pairs(thumbs: Thumbs, pairs: np.ndarray, options: DedupOptions,
                     block: int = 4096) -> np.ndarray:
    """Each pair's thumbnail correlation after the second is warped onto the first by a shift
    and scale within registered_shift and registered_scale (registration.py), the better of
    as-is and mirrored (with include_flips: a near-symmetric face's mirror image can correlate
    better before the alignment and worse after it)."""
    return _by_blocks(thumbs, pairs, options.include_flips, block, lambda a, b: (
        registered_correlation(a, b, options.registered_shift, options.registered_scale,
                               REGISTERED_BORDER)))


def shifted_pairs(thumbs: Thumbs, pairs: np.ndarray, options: DedupOptions,
                  block: int = 16384) -> np.ndarray:
    """Each pair's best thumbnail correlation over whole-pixel shifts of up to registered_shift
    (registration.shifted_correlation), the better of as-is and mirrored with include_flips."""
    shift = min(int(options.registered_shift), REGISTERED_BORDER)
    return _by_blocks(thumbs, pairs, options.include_flips, block, lambda a, b: (
        shifted_correlation(a, b, shift, REGISTERED_BORDER)))


def _by_blocks(thumbs: Thumbs, pairs: np.ndarray, flips: bool, block: int, score) -> np.ndarray:
    """score(a, [b] or [b, b mirrored]) over the pairs' standardized thumbnails, a block of
    pairs at a time (the float copies of a million pairs would not fit)."""
    out = np.zeros(len(pairs), np.float32)
    for start in range(0, len(pairs), block):
        part = pairs[start:start + block]
        a, b = thumbs.standard(part[:, 0]), thumbs.standard(part[:, 1])
        out[start:start + block] = score(a, [b, mirrored(b, THUMB_SIDE)] if flips else [b])
    return out


def _hashes_near(keys: pa.Table, thumbs: Thumbs, pairs: np.ndarray,
                 options: DedupOptions) -> np.ndarray:
    """Whether each pair's equalized pHashes lie within robust_radius bits, or one quarter of
    their thumbnails hashes within robust_quarter_radius (mirrors too, with include_flips)."""
    if len(pairs) == 0:
        return np.zeros(0, bool)
    a, b = pairs[:, 0], pairs[:, 1]
    eq = _hashes(keys, "source_phash_eq")
    mirrors = [_hashes(keys, "source_phash_eq_mirror")] if options.include_flips else []
    near = np.min([popcount64(eq[a] ^ h[b]) for h in (eq, *mirrors)], axis=0) \
        <= options.robust_radius
    faces, index = np.unique(pairs, return_inverse=True)
    quarters, mirrored = quarter_hashes(thumbs.pixels[faces].reshape(-1, THUMB_SIDE, THUMB_SIDE))
    qa, qb = index.reshape(pairs.shape).T
    both = (quarters, mirrored) if options.include_flips else (quarters,)
    quarter = np.min([popcount64(quarters[qa] ^ h[qb]) for h in both], axis=(0, 2))
    return near | (quarter <= options.robust_quarter_radius)


def _best_per_cluster_pair(pairs: np.ndarray, score: np.ndarray, cluster: np.ndarray,
                           most: int = PER_CLUSTER_PAIR, positions: bool = False) -> np.ndarray:
    """The `most` best-scoring pairs between each two clusters, in pair order (their
    positions in `pairs` with `positions`)."""
    key = _cluster_pair_key(pairs, cluster)
    order = np.lexsort((-score, key))
    key = key[order]
    starts = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, bool)
    rank = np.arange(len(key)) - np.maximum.accumulate(np.where(starts, np.arange(len(key)), 0))
    chosen = np.sort(order[rank < most])
    return chosen if positions else pairs[chosen]


def _cluster_pair_key(pairs: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """One integer per unordered pair of the pairs' clusters."""
    a, b = cluster[pairs[:, 0]], cluster[pairs[:, 1]]
    return np.minimum(a, b) * (int(cluster.max(initial=0)) + 1) + np.maximum(a, b)


def _cluster_pair_sizes(pairs: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """For each pair, how many of the pairs join the same two clusters."""
    _, at, count = np.unique(_cluster_pair_key(pairs, cluster), return_inverse=True,
                             return_counts=True)
    return count[at]


def _near(keys: pa.Table, kind: str, radius: int, flips: bool) -> np.ndarray:
    """Pairs whose `kind` hashes lie within `radius` bits (and, with `flips`, one against the
    other's mirror hash)."""
    hashes = _hashes(keys, kind)
    sets = [near_pairs(hashes, hashes, radius, same_set=True)]
    if flips:
        sets.append(mirrored_pairs(hashes, _hashes(keys, f"{kind}_mirror"), radius))
    return _unique(sets)


def _unique(sets: list[np.ndarray]) -> np.ndarray:
    pairs = np.concatenate(sets) if sets else np.zeros((0, 2), np.int64)
    return unique_pairs(pairs, int(pairs.max(initial=0)) + 1)


@dataclass
class DedupResult:
    index: pa.Table  # one row per face: cluster, keep, and why not
    pairs: int
    pairs_by_key: dict[str, int]  # edges each key found (an edge can be found by several)
    exact_groups: int
    exact_conflict_groups: int
    conflict_clusters: int  # clusters whose members carry different labels
    conflict_examples: list[dict]  # the largest of them, with members' labels
    clusters_spanning_splits: int
    kept_pairs: pa.Table  # schema.KEPT_PAIRS: the edges between two kept faces, by key


def build_index(faces: pa.Table, options: DedupOptions) -> DedupResult:
    """Cluster all faces (any datasets) and decide which to keep.

    `faces` needs: image_id, dataset, label, subject_id, official_split, pixel_std and the
    KEY_COLUMNS.
    """
    n = faces.num_rows
    found = duplicate_pairs(faces, options)
    pairs = _unique(list(found.values()))
    labels = np.array(faces.column("label").to_pylist(), dtype=object)
    subjects = faces.column("subject_id").to_pylist()
    pairs = _drop_posed_expressions(pairs, labels, subjects)
    cluster = clusters(n, pairs)

    datasets = np.array(faces.column("dataset").to_pylist(), dtype=object)
    splits = faces.column("official_split").to_pylist()
    ids = faces.column("image_id").to_pylist()
    stds = np.asarray(faces.column("pixel_std").to_numpy(zero_copy_only=False), np.float64)
    choice = _choose(cluster, labels, datasets, splits, subjects, ids, stds, options)
    sizes = np.bincount(cluster)[cluster] if n else np.array([], dtype=np.int64)

    index = pa.table({
        "image_id": ids,
        "dataset": datasets.tolist(),
        "source_path": faces.column("source_path"),
        "label": labels.tolist(),
        "subject_id": faces.column("subject_id"),
        "official_split": splits,
        **{c: faces.column(c) for c in KEY_COLUMNS if c != "source_thumb"},
        "pixel_std": faces.column("pixel_std"),
        "cluster_id": pa.array(cluster, pa.int64()),
        "cluster_size": pa.array(sizes, pa.int64()),
        "keep": pa.array(choice.keep),
        "drop_reason": choice.reason,
        "drop_detail": choice.detail,
        "duplicate_of": choice.duplicate_of,
    }, schema=schema.INDEX)
    digests = np.array(faces.column("source_digest").to_pylist(), dtype=object)
    exact_groups, exact_conflicts = _exact_stats(
        np.unique(digests, return_inverse=True)[1] if n else np.array([], np.int64), labels)
    conflicts = _conflicts(cluster, labels, ids, datasets)
    return DedupResult(index, len(pairs), {k: len(v) for k, v in found.items()}, exact_groups,
                       exact_conflicts, len(conflicts), conflicts[:20],
                       _spanning(cluster, splits), kept_pairs(ids, found, choice.keep))


def kept_pairs(ids: list[str], found: dict[str, np.ndarray], keep: np.ndarray) -> pa.Table:
    """The edges of `found` (duplicate_pairs' output, rows of `ids`) whose two faces are both
    kept (`keep`), as a schema.KEPT_PAIRS table. Only kept faces get a split, so these are the
    only edges that can cross splits: splits checks them (`splits.check_leaks`) instead of
    searching all faces a second time."""
    keep = np.asarray(keep, bool)
    ids = np.asarray(ids, dtype=object)
    parts = {key: p[keep[p[:, 0]] & keep[p[:, 1]]] for key, p in found.items()}
    return pa.table({
        "image_id_a": np.concatenate([ids[p[:, 0]] for p in parts.values()] or [[]]).tolist(),
        "image_id_b": np.concatenate([ids[p[:, 1]] for p in parts.values()] or [[]]).tolist(),
        "key": np.repeat(list(parts), [len(p) for p in parts.values()]).tolist(),
    }, schema=schema.KEPT_PAIRS)


def _drop_posed_expressions(pairs: np.ndarray, labels: np.ndarray,
                            subjects: list[str | None]) -> np.ndarray:
    """Forget pairs of one subject's different posed expressions (CK+, KDEF, JAFFE, RAVDESS):
    they share pose, light and face, so their 8x8 pHash barely differs, yet they are distinct
    photographs by the dataset's design, not duplicates."""
    if len(pairs) == 0:
        return pairs
    subject = np.array([s or "" for s in subjects], dtype=object)
    a, b = pairs[:, 0], pairs[:, 1]
    posed = (subject[a] != "") & (subject[a] == subject[b]) & (labels[a] != labels[b])
    return pairs[~posed]


@dataclass
class _Choice:
    keep: np.ndarray
    reason: list[str | None]
    detail: list[str | None]
    duplicate_of: list[str | None]


def _choose(cluster, labels, datasets, splits, subjects, ids, stds,
            options: DedupOptions) -> _Choice:
    """Per cluster: one representative per label (or the policy's answer to a conflict).
    Preferred: a face with a subject (its subject decides its split, so a copy filed elsewhere
    without one cannot carry that person into another split), then the dataset priority (a
    cluster follows FER2013's official split, not the arbitrary split of a set that repackages
    it), then within a dataset the most protected split, then the image id."""
    n = len(cluster)
    out = _Choice(np.zeros(n, bool), [None] * n, [None] * n, [None] * n)
    priority = {d: i for i, d in enumerate(options.dataset_priority)}
    members: dict[int, list[int]] = {}
    for i, c in enumerate(cluster):
        members.setdefault(int(c), []).append(i)
    for group in members.values():
        usable = []
        for i in group:
            if stds[i] < options.min_std:
                out.reason[i], out.detail[i] = (
                    "low_information", f"pixel std {stds[i]:.2f} outside its most varied band")
            else:
                usable.append(i)
        if not usable:
            continue
        counts = Counter(labels[i] for i in usable)
        allowed = set(counts)
        if len(counts) > 1:
            ranked = counts.most_common()
            majority = options.conflict_policy == "keep_majority" and ranked[0][1] > ranked[1][1]
            allowed = {ranked[0][0]} if majority else set()
        for label in counts:
            same = sorted((i for i in usable if labels[i] == label),
                          key=lambda i: (not subjects[i],
                                         priority.get(datasets[i], len(priority)),
                                         -SPLIT_PROTECTION[splits[i]], ids[i]))
            if label not in allowed:
                for i in same:
                    out.reason[i] = "label_conflict"
                    out.detail[i] = "cluster labels " + ", ".join(
                        f"{k}:{v}" for k, v in counts.most_common())
                continue
            out.keep[same[0]] = True
            for i in same[1:]:
                out.reason[i], out.detail[i] = "duplicate", f"of {ids[same[0]]}"
                out.duplicate_of[i] = ids[same[0]]
    return out


def _exact_stats(group: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    if len(group) == 0:
        return 0, 0
    sizes = np.bincount(group)
    multi = np.nonzero(sizes > 1)[0]
    label_sets: dict[int, set] = {}
    for g, label in zip(group, labels, strict=True):
        if sizes[g] > 1:
            label_sets.setdefault(int(g), set()).add(label)
    return len(multi), sum(1 for s in label_sets.values() if len(s) > 1)


def _conflicts(cluster, labels, ids, datasets) -> list[dict]:
    """Every cluster with more than one label, largest first, with up to 8 members each."""
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(cluster):
        groups.setdefault(int(c), []).append(i)
    out = [{"cluster_id": c, "size": len(members), "members": [
        {"image_id": ids[i], "dataset": datasets[i], "label": labels[i]} for i in members[:8]]}
        for c, members in groups.items() if len({labels[i] for i in members}) > 1]
    return sorted(out, key=lambda e: -e["size"])


def _spanning(cluster, splits) -> int:
    seen: dict[int, set] = {}
    for c, s in zip(cluster, splits, strict=True):
        if s is not None:
            seen.setdefault(int(c), set()).add(s)
    return sum(1 for s in seen.values() if len(s) > 1)


def drops_by_source(index: pa.Table) -> dict[str, dict[str, int]]:
    """For each dataset: how many of its faces were dropped as duplicates of a face from each
    dataset (the kept one)."""
    dataset_of = dict(zip(index.column("image_id").to_pylist(),
                          index.column("dataset").to_pylist(), strict=True))
    out: dict[str, Counter] = {}
    for dataset, of in zip(index.column("dataset").to_pylist(),
                           index.column("duplicate_of").to_pylist(), strict=True):
        if of is not None:
            out.setdefault(dataset, Counter())[dataset_of[of]] += 1
    return {k: dict(v) for k, v in out.items()}


def dedup_rejects(index: pa.Table) -> pa.Table:
    """The faces face_index dropped, as reject rows with their reason."""
    dropped = index.filter(pc.invert(index.column("keep")))
    return schema.reject_table(
        {"dataset": r["dataset"], "source_path": r["source_path"], "stage": "dedup",
         "reason": r["drop_reason"], "detail": r["drop_detail"]}
        for r in dropped.select(["dataset", "source_path", "drop_reason", "drop_detail"])
        .to_pylist())


def cross_dataset_clusters(index: pa.Table) -> int:
    """Clusters whose faces come from more than one dataset."""
    datasets: dict[int, set] = {}
    for c, d in zip(index.column("cluster_id").to_pylist(), index.column("dataset").to_pylist(),
                    strict=True):
        datasets.setdefault(c, set()).add(d)
    return sum(1 for v in datasets.values() if len(v) > 1)
