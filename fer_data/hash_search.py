"""Near-duplicate search over 64-bit perceptual hashes, kept apart from how hashes are made
(phash.py), as imagededup separates encoding from search.

Multi-index hashing: split the 64-bit hash into 4 chunks of 16 bits; two hashes within distance t
agree to within floor(t / 4) bits on at least one chunk (pigeonhole), so candidates come from
sorted chunk lookups and only candidates get a full popcount. Everything is vectorized in numpy,
in blocks, so 200,000 hashes take seconds, not an O(n^2) Python loop.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

CHUNKS = 4
CHUNK_BITS = 64 // CHUNKS
_BLOCK = 1 << 20  # candidate pairs materialized at once



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
    int64 array with unique rows, sorted. With same_set, queries and database are the same
    hashes and only pairs i < j are returned.

    Equal hashes are searched once: copies of one picture often share their hash exactly, and
    at a million faces the candidates of the repeated values would dominate the search."""
    if threshold >= 4 * CHUNKS:
        raise ValueError(f"threshold {threshold} too large for {CHUNKS}-chunk multi-index hashing")
    q_values, q_of = np.unique(queries, return_inverse=True)
    if same_set:
        repeated = np.nonzero(np.bincount(q_of) > 1)[0]  # items sharing a value: distance 0
        value_pairs = np.concatenate([_search(q_values, q_values, threshold, True),
                                      np.stack([repeated, repeated], axis=1)])
        pairs = np.sort(_expand_groups(value_pairs, q_of, q_of), axis=1)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    else:
        d_values, d_of = np.unique(database, return_inverse=True)
        pairs = _expand_groups(_search(q_values, d_values, threshold, False),
                               q_of, d_of)
    return unique_pairs(pairs, max(len(queries), len(database)))


def unique_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    """np.unique(pairs, axis=0) for indices below n, through one int64 code per pair, sorted
    and deduplicated by hand: NumPy 2.4's np.unique of plain values takes a hash-table path
    that took 23 s for 15M codes, where the sort takes 0.3 s."""
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    codes = np.sort(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])
    codes = codes[np.r_[True, codes[1:] != codes[:-1]]]
    return np.stack([codes // n, codes % n], axis=1)


def best_per_pair(pairs: np.ndarray, score: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unordered pairs of indices below n, made unique (i < j, sorted), each with the best of
    its scores."""
    code = np.minimum(pairs[:, 0], pairs[:, 1]).astype(np.int64) * n \
        + np.maximum(pairs[:, 0], pairs[:, 1])
    order = np.lexsort((-score, code))  # by pair, the best score first
    code, score = code[order], score[order]
    first = np.r_[True, code[1:] != code[:-1]][:len(code)]
    code, score = code[first], score[first]
    return np.stack([code // n, code % n], axis=1), score


def _members(of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices grouped by value id (order) and each id's start in it (CSR)."""
    order = np.argsort(of, kind="stable")
    starts = np.zeros(int(of.max(initial=-1)) + 2, np.int64)
    np.cumsum(np.bincount(of, minlength=len(starts) - 1), out=starts[1:])
    return order, starts


def _expand_groups(value_pairs: np.ndarray, q_of: np.ndarray, d_of: np.ndarray) -> np.ndarray:
    """Pairs of values -> every pair of the items that carry them."""
    if len(value_pairs) == 0:
        return np.zeros((0, 2), np.int64)
    q_order, q_starts = _members(q_of)
    d_order, d_starts = _members(d_of)
    a, b = value_pairs[:, 0], value_pairs[:, 1]
    na, nb = q_starts[a + 1] - q_starts[a], d_starts[b + 1] - d_starts[b]
    per = na * nb
    pair = np.repeat(np.arange(len(a)), per)
    k = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
    i = q_order[q_starts[a][pair] + k // nb[pair]]
    j = d_order[d_starts[b][pair] + k % nb[pair]]
    return np.stack([i, j], axis=1)


def _search(queries: np.ndarray, database: np.ndarray, threshold: int,
            same_set: bool) -> np.ndarray:
    """Multi-index search over (distinct) hashes: candidate pairs from chunk buckets, kept when
    the full distance is within threshold."""
    masks = _flip_masks(threshold // CHUNKS)
    found = []
    for j in range(CHUNKS):
        db_keys = _chunk(database, j)
        order = np.argsort(db_keys, kind="stable")
        # bucket bounds of every possible chunk value: a probe is two table lookups (a
        # binary search per probe cost 10x more at 36k hashes)
        starts = np.zeros((1 << CHUNK_BITS) + 1, np.int64)
        np.cumsum(np.bincount(db_keys, minlength=1 << CHUNK_BITS), out=starts[1:])
        q_keys = _chunk(queries, j)
        for mask in masks:
            probe = q_keys ^ mask
            found.append(_expand(starts[probe], starts[probe + 1], order, queries, database,
                                 threshold, same_set))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)


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


def group_pairs(group: np.ndarray) -> np.ndarray:
    """Pairs (first member, other member) inside each group of equal ids: the edges that make
    exact duplicates one cluster."""
    if len(group) == 0:
        return np.zeros((0, 2), np.int64)
    order = np.argsort(group, kind="stable")
    g = group[order]
    first = np.r_[True, g[1:] != g[:-1]]
    leader = order[np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))]
    pairs = np.stack([leader, order], axis=1)[~first]
    return np.sort(pairs, axis=1).astype(np.int64)


def mirrored_pairs(hashes: np.ndarray, mirrored: np.ndarray, threshold: int) -> np.ndarray:
    """Pairs (i < j) where the mirror image of one lies within `threshold` of the other: the
    mirror of i against j, sorted and without self-pairs (a symmetric face is near its own
    mirror)."""
    pairs = np.sort(near_pairs(mirrored, hashes, threshold, False), axis=1)
    return pairs[pairs[:, 0] != pairs[:, 1]]
