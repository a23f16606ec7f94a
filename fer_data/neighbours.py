"""The most correlated faces of each face, by thumbnail, for de-duplication's second tier.

A copy of a face (watermarked, locally re-contrasted, re-encoded, posterized) correlates with it
at 0.8 or more in the equalized 32x32 thumbnail, whatever happened to its 64-bit hashes. Hash
balls wide enough to catch those copies grow with the square of the collection: within 12 bits
of the equalized pHash, 36,868 real faces (FER2013 + CK+48) gave 386k candidate pairs, which
would be ~280M at a million. Instead each face gets its `k` most correlated faces outside its own
group (its tier-1 cluster: those need no check), so the work grows with n * k:

1. the standardized thumbnails (a pair's correlation is their dot product over side^2) are
   projected on the `DIMS` leading eigenvectors of a sample's second moments, mirrors included,
   and the projections scaled to unit length: 64 numbers stand in for 1,024, and their cosine
   for the correlation. (The projection keeps 86% of the energy of real faces on average but as
   little as 60% of some: unscaled, the dot products of a watermarked copy and its origin that
   correlate at 0.89-0.97 came out at 0.55-0.65, under the floor, and 29 of 36 such copies in
   bench/leaks.py were never candidates.);
2. a face whose projection matches its group's first face's at REPRESENTED or more (a
   re-encoded or contrast-changed copy the hashes joined to it) is left out: the first stands
   for it (`representatives`; a million faces with dozens of copies each search as about half
   as many, and each face's k places go to other pictures rather than copies of one);
3. an inverted file: spherical k-means cells of the projections; every face, and with `flips`
   its mirror image, is compared with the members of its `PROBES` nearest cells;
4. per face, the `k` best-scoring faces of other groups at `floor` or above.

The scores are approximate: the caller verifies the candidates on the whole
thumbnails. On the real 36,868 faces, the 16 nearest at 0.7 held 95% of the pairs that an
exhaustive comparison of all 680M pairs accepts (the hash balls of radius 12 held 90%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fer_data.hash_search import best_per_pair

DIMS = 64  # projected dimensions
PROBES = 24  # cells each face is compared with (8: 5-6 of the 2,312 overlaid copies in
# bench/leaks.py that correlate with their origin at 0.8+ were not candidates, 12: 2-3, 24: 0-1)
CELLS_PER_ROOT = 2  # cells per square root of the number of faces (real faces: the same
# clusters as 1 or 4; a million faces: 2,000 cells of ~500)
SAMPLE = 20_000  # faces the projection and the cells are fitted on
ITERATIONS = 8  # k-means rounds
REPRESENTED = 0.99  # projected cosine at which a face of a group stands for another
_BLOCK = 65_536  # faces projected or assigned at once
_ROWS = 8_192  # queries compared with one cell at once (a block of scores)


@dataclass
class Thumbs:
    """Square gray thumbnails (n, side*side) as stored (uint8), with each one's mean and
    1/std: standardized a block at a time, so a million faces need 1 GB, not 4 GB of float
    copies. Flat thumbnails get 1/std = 0 and correlate with nothing."""

    pixels: np.ndarray
    mean: np.ndarray
    inv_std: np.ndarray

    @property
    def side(self) -> int:
        return int(round(np.sqrt(self.pixels.shape[1])))

    def standard(self, index: np.ndarray, mirror: bool = False) -> np.ndarray:
        """The rows' pixel z-scores (float32; a pair's correlation is their dot product over
        side^2), of the mirror images if asked."""
        x = self.pixels[index].astype(np.float32)
        x -= self.mean[index, None]
        x *= self.inv_std[index, None]
        return mirrored(x, self.side) if mirror else x


def mirrored(x: np.ndarray, side: int) -> np.ndarray:
    """Rows of flattened side x side images, each mirrored left for right."""
    return x.reshape(-1, side, side)[:, :, ::-1].reshape(len(x), -1)


def neighbour_pairs(thumbs: Thumbs, groups: np.ndarray, k: int, floor: float, flips: bool,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j, unique, sorted) where j is among the `k` faces of another group that
    correlate best with i (or with i's mirror image, with `flips`), at `floor` or more by the
    projected thumbnails, and each pair's best score."""
    n = len(thumbs.pixels)
    if n < 2 or k < 1:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    rng = np.random.default_rng(seed)
    basis = _basis(thumbs, rng)
    points = _project(thumbs, basis, mirror=False)
    flipped = _project(thumbs, basis, mirror=True) if flips else None
    # only each group's representatives search and are searched (see `representatives`)
    place = np.flatnonzero(representatives(points, flipped, groups))
    points, groups = points[place], groups[place]
    flipped = flipped[place] if flips else None
    centroids = _kmeans(points, rng)
    probes = min(PROBES, len(centroids))
    queries = [(points, _nearest_cells(points, centroids, probes))]
    if flips:
        queries.append((flipped, _nearest_cells(flipped, centroids, probes)))
    # the database in cell order, so that a cell's members are one slice
    order, bounds = _by_value(queries[0][1][:, 0], len(centroids))
    database = torch.from_numpy(points[order])
    database_groups = torch.from_numpy(groups[order])
    database_index = torch.from_numpy(order)
    found = []
    m = len(points)
    for query, cells in queries:  # each with k places of its own: a symmetric face finds the same
        query, query_groups = torch.from_numpy(query), torch.from_numpy(groups)
        best_score = torch.full((m, k), -np.inf)
        best_index = torch.full((m, k), -1, dtype=torch.int64)
        # per cell, every query that probes it (a query probes a cell once)
        asking_order, asking_bounds = _by_value(cells.ravel(), len(centroids))
        asking_all = asking_order // probes
        for cell in range(len(centroids)):
            lo, hi = bounds[cell], bounds[cell + 1]
            asking = asking_all[asking_bounds[cell]:asking_bounds[cell + 1]]
            for start in range(0, len(asking) if hi > lo else 0, _ROWS):
                rows = torch.from_numpy(asking[start:start + _ROWS])
                scores = query[rows] @ database[lo:hi].T
                scores.masked_fill_(query_groups[rows][:, None] == database_groups[lo:hi],
                                    -np.inf)
                top, at = scores.topk(min(k, hi - lo), dim=1)
                both = torch.cat([best_score[rows], top], dim=1)
                both_index = torch.cat([best_index[rows], database_index[lo:hi][at]], dim=1)
                best_score[rows], kept = both.topk(k, dim=1)
                best_index[rows] = both_index.gather(1, kept)
        best_score, best_index = best_score.numpy().ravel(), best_index.numpy().ravel()
        keep = best_score >= floor
        found.append((place[np.repeat(np.arange(m), k)[keep]], place[best_index[keep]],
                      best_score[keep]))
    i, j, score = (np.concatenate(parts) for parts in zip(*found, strict=True))
    return best_per_pair(np.stack([i, j], axis=1), score, n)


def representatives(points: np.ndarray, flipped: np.ndarray | None,
                    groups: np.ndarray) -> np.ndarray:
    """Whether each face represents itself in the search: all but those whose projection (or
    its mirror image's) matches their group's first face's at REPRESENTED or more. Such a face
    is the same picture as that first face for the search's purpose (a re-encoded or contrast-
    changed copy the hashes already joined to it) and would find the same neighbours: a million
    faces with dozens of copies each search as ~half as many (a pair found for the first face
    joins its whole group, clusters being transitive)."""
    _, at, of = np.unique(groups, return_index=True, return_inverse=True)
    head = points[at[of]]  # each face's group's first face
    same = np.einsum("ij,ij->i", points, head)
    if flipped is not None:
        same = np.maximum(same, np.einsum("ij,ij->i", flipped, head))
    out = same < REPRESENTED
    out[at] = True
    return out


def _basis(thumbs: Thumbs, rng: np.random.Generator) -> np.ndarray:
    """The DIMS leading eigenvectors of the second moments of a sample and its mirror images
    (uncentred: what is approximated is the dot product itself)."""
    n = len(thumbs.pixels)
    sample = np.sort(rng.choice(n, min(n, SAMPLE), replace=False))
    x = np.concatenate([thumbs.standard(sample, mirror) for mirror in (False, True)])
    _, vectors = np.linalg.eigh((x.T @ x).astype(np.float64))
    return (vectors[:, ::-1][:, :DIMS] / thumbs.side).astype(np.float32)


def _project(thumbs: Thumbs, basis: np.ndarray, mirror: bool) -> np.ndarray:
    """Each thumbnail's projection on the basis, scaled to unit length (a flat one stays 0)."""
    n = len(thumbs.pixels)
    out = np.empty((n, basis.shape[1]), np.float32)
    for start in range(0, n, _BLOCK):
        index = np.arange(start, min(start + _BLOCK, n))
        block = thumbs.standard(index, mirror) @ basis
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        out[index] = np.divide(block, norms, out=np.zeros_like(block), where=norms > 1e-6)
    return out


def _kmeans(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means on a sample: CELLS_PER_ROOT * sqrt(n) unit-length centroids."""
    n = len(points)
    cells = int(np.clip(CELLS_PER_ROOT * np.sqrt(n), 1, n))
    sample = points[np.sort(rng.choice(n, min(n, max(SAMPLE, 16 * cells)), replace=False))]
    centroids = sample[rng.choice(len(sample), cells, replace=False)].copy()
    for _ in range(ITERATIONS):
        assigned = _nearest_cells(sample, centroids, 1)[:, 0]
        sums = np.zeros_like(centroids)
        np.add.at(sums, assigned, sample)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] < 1e-6  # an empty cell keeps its centroid
        centroids[~empty] = sums[~empty] / norms[~empty]
    return centroids


def _nearest_cells(points: np.ndarray, centroids: np.ndarray, probes: int) -> np.ndarray:
    """Each point's `probes` best-matching cells, best first."""
    out = np.empty((len(points), probes), np.int64)
    table = torch.from_numpy(centroids)
    for start in range(0, len(points), _BLOCK):
        scores = torch.from_numpy(points[start:start + _BLOCK]) @ table.T
        out[start:start + len(scores)] = scores.topk(probes, dim=1).indices.numpy()
    return out


def _by_value(assignment: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices sorted by their value (0..count-1), and where each value's run starts (CSR)."""
    order = np.argsort(assignment, kind="stable")
    return order, np.searchsorted(assignment[order], np.arange(count + 1))
