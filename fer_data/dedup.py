"""De-duplication across all datasets: exact duplicates (same decoded pixels), near duplicates
(pHash within a Hamming radius, mirrored copies included), clusters, label conflicts and a
low-information filter.

Near-duplicate search is multi-index hashing: split the 64-bit hash into 4 chunks of 16 bits;
two hashes within distance t agree to within floor(t / 4) bits on at least one chunk (pigeonhole),
so candidates come from sorted chunk lookups and only candidates get a full popcount. Everything
is vectorized in numpy, in blocks, so 200,000 hashes take seconds, not an O(n^2) Python loop.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fer_data.images import decode_png
from fer_data.phash import phash_batch

CHUNKS = 4
CHUNK_BITS = 64 // CHUNKS
_BLOCK = 1 << 20  # candidate pairs materialized at once

# The split a duplicate cluster keeps when its members came from different splits.
SPLIT_PROTECTION = {"test": 3, "val": 2, "train": 1, None: 0}


def popcount64(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x.view(np.uint64)).astype(np.int64)


def _chunk(hashes: np.ndarray, j: int) -> np.ndarray:
    shift = np.uint64(CHUNK_BITS * j)
    return ((hashes.view(np.uint64) >> shift) & np.uint64((1 << CHUNK_BITS) - 1)).astype(np.int64)


def _flip_masks(radius: int) -> np.ndarray:
    """Every CHUNK_BITS-bit mask with at most `radius` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(CHUNK_BITS), r)]
    return np.array(masks, dtype=np.int64)


def near_pairs(queries: np.ndarray, database: np.ndarray, threshold: int,
               same_set: bool) -> np.ndarray:
    """All (query index, database index) pairs with Hamming distance <= threshold, as an (m, 2)
    int64 array with unique rows. With same_set, queries and database are the same hashes and
    only pairs i < j are returned."""
    if threshold >= 4 * CHUNKS:
        raise ValueError(f"threshold {threshold} too large for {CHUNKS}-chunk multi-index hashing")
    radius = threshold // CHUNKS
    masks = _flip_masks(radius)
    found = []
    for j in range(CHUNKS):
        db_keys = _chunk(database, j)
        order = np.argsort(db_keys, kind="stable")
        sorted_keys = db_keys[order]
        q_keys = _chunk(queries, j)
        for mask in masks:
            probe = q_keys ^ mask
            lo = np.searchsorted(sorted_keys, probe, side="left")
            hi = np.searchsorted(sorted_keys, probe, side="right")
            found.append(_expand(lo, hi, order, queries, database, threshold, same_set))
    if not found:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _expand(lo, hi, order, queries, database, threshold, same_set) -> np.ndarray:
    """Candidate pairs from bucket ranges, in blocks, filtered by the full distance."""
    counts = hi - lo
    has = np.nonzero(counts)[0]
    out = []
    start = 0
    cumulative = np.cumsum(counts[has])
    while start < len(has):
        # take as many queries as fit in one block of candidate pairs
        base = cumulative[start - 1] if start else 0
        stop = int(np.searchsorted(cumulative, base + _BLOCK, side="right"))
        stop = max(stop, start + 1)
        q = has[start:stop]
        n = counts[q]
        qi = np.repeat(q, n)
        offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        di = order[np.repeat(lo[q], n) + offsets]
        keep = popcount64(queries[qi] ^ database[di]) <= threshold
        if same_set:
            keep &= qi < di
        out.append(np.stack([qi[keep], di[keep]], axis=1))
        start = stop
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of the duplicate graph: a cluster id per item."""
    if len(pairs) == 0:
        return np.arange(n)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def pixel_digest(png: bytes) -> str:
    """Hash of the decoded pixels: the same picture saved as different JPEGs or PNGs, or parsed
    from a CSV, gives the same digest when its pixels are the same."""
    pixels = decode_png(png)
    return hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DedupOptions:
    threshold: int = 4  # pHash Hamming radius for a near duplicate
    include_flips: bool = True
    conflict_policy: Literal["drop_all", "keep_majority"] = "keep_majority"
    min_std: float = 4.0  # below this pixel standard deviation an image is near-uniform
    dataset_priority: tuple[str, ...] = ("fer2013", "ckplus", "kdef", "jaffe", "ravdess",
                                         "face_expression")


@dataclass
class DedupResult:
    index: pa.Table  # one row per face: cluster, keep, and why not
    pairs: int
    exact_groups: int
    exact_conflict_groups: int
    conflict_clusters: int  # clusters whose members carry different labels
    conflict_examples: list[dict]  # the largest of them, with members' labels
    clusters_spanning_splits: int


def build_index(faces: pa.Table, options: DedupOptions) -> DedupResult:
    """Cluster all faces (any datasets) and decide which to keep.

    `faces` needs: image_id, dataset, label, subject_id, official_split, face, phash.
    """
    n = faces.num_rows
    pngs = faces.column("face").to_pylist()
    crops = [decode_png(b) for b in pngs]
    digests = np.array([pixel_digest(b) for b in pngs]) if n else np.array([], dtype=str)
    stds = np.array([float(c.std()) for c in crops])
    hashes = np.asarray(faces.column("phash").to_numpy(zero_copy_only=False), dtype=np.int64)
    flipped = phash_batch([np.fliplr(c) for c in crops]) if n else hashes

    pair_sets = [near_pairs(hashes, hashes, options.threshold, same_set=True)]
    if options.include_flips and n:
        mirrored = near_pairs(flipped, hashes, options.threshold, same_set=False)
        mirrored = np.sort(mirrored, axis=1)
        pair_sets.append(mirrored[mirrored[:, 0] != mirrored[:, 1]])
    _, exact_inverse = np.unique(digests, return_inverse=True) if n else (None, np.array([]))
    exact_pairs = _group_pairs(exact_inverse)
    pairs = np.unique(np.concatenate([*pair_sets, exact_pairs]), axis=0) if n else exact_pairs
    labels = np.array(faces.column("label").to_pylist(), dtype=object)
    pairs = _drop_posed_expressions(pairs, labels, faces.column("subject_id").to_pylist())
    cluster = clusters(n, pairs)

    datasets = np.array(faces.column("dataset").to_pylist(), dtype=object)
    splits = faces.column("official_split").to_pylist()
    ids = faces.column("image_id").to_pylist()
    keep, reason, detail = _choose(cluster, labels, datasets, splits, ids, stds, options)
    sizes = np.bincount(cluster)[cluster] if n else np.array([], dtype=np.int64)

    index = pa.table({
        "image_id": ids,
        "dataset": datasets.tolist(),
        "label": labels.tolist(),
        "subject_id": faces.column("subject_id"),
        "official_split": splits,
        "phash": pa.array(hashes, pa.int64()),
        "phash_flipped": pa.array(flipped, pa.int64()),
        "pixel_digest": digests.tolist(),
        "pixel_std": pa.array(stds, pa.float32()),
        "cluster_id": pa.array(cluster, pa.int64()),
        "cluster_size": pa.array(sizes, pa.int64()),
        "keep": pa.array(keep),
        "drop_reason": reason,
        "drop_detail": detail,
    })
    exact_groups, exact_conflicts = _exact_stats(exact_inverse, labels)
    conflicts = _conflicts(cluster, labels, ids, datasets)
    return DedupResult(index, len(pairs), exact_groups, exact_conflicts, len(conflicts),
                       conflicts[:20], _spanning(cluster, splits))


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


def _group_pairs(group: np.ndarray) -> np.ndarray:
    """Pairs (first member, other member) inside each group of equal ids."""
    if len(group) == 0:
        return np.zeros((0, 2), np.int64)
    order = np.argsort(group, kind="stable")
    g = group[order]
    first = np.r_[True, g[1:] != g[:-1]]
    leader = order[np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))]
    pairs = np.stack([leader, order], axis=1)[~first]
    return np.sort(pairs, axis=1).astype(np.int64)


def _choose(cluster, labels, datasets, splits, ids, stds, options: DedupOptions):
    """Per cluster: one representative per label (or the policy's answer to a conflict),
    preferring the most protected split, then the dataset priority, then the image id."""
    n = len(cluster)
    keep = np.zeros(n, bool)
    reason: list[str | None] = [None] * n
    detail: list[str | None] = [None] * n
    priority = {d: i for i, d in enumerate(options.dataset_priority)}
    members: dict[int, list[int]] = {}
    for i, c in enumerate(cluster):
        members.setdefault(int(c), []).append(i)
    for group in members.values():
        usable = []
        for i in group:
            if stds[i] < options.min_std:
                reason[i], detail[i] = "low_information", f"pixel std {stds[i]:.2f}"
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
                          key=lambda i: (-SPLIT_PROTECTION[splits[i]],
                                         priority.get(datasets[i], len(priority)), ids[i]))
            if label in allowed:
                keep[same[0]] = True
                rest = same[1:]
                for i in rest:
                    reason[i], detail[i] = "duplicate", f"of {ids[same[0]]}"
            else:
                for i in same:
                    reason[i] = "label_conflict"
                    detail[i] = "cluster labels " + ", ".join(f"{k}:{v}" for k, v in
                                                               counts.most_common())
    return keep, reason, detail


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
