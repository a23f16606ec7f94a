"""Where each planted copy that face_index misses is lost on its way to the registered tier.

Reads the stress set bench/scale.py built (face_crops and manifest), finds every duplicate edge
as face_index does (dedup.duplicate_pairs, default options) while keeping the registered tier's
intermediate arrays (the neighbour search's pairs, the candidates left after the cap per pair of
clusters, the pairs it aligned), and counts for the missed copies (those outside their origin's
final cluster): the origin among the copy's neighbours, after the cap, aligned; some member of
the origin's cluster among the neighbours, aligned onto; the missed copies' cluster sizes.

    .venv/bin/python bench/missed.py [--work /tmp/fer-scale] [--save arrays.npz]

Prints JSON and writes bench/results/missed.json. About 5 minutes at 1M faces on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from common import REPO
from scale import PARTITION

from fer_data import dedup
from fer_data.datasets import keeper_priority
from fer_data.hash_search import clusters
from fer_data.storage import StorageLayout, read_table

RESULTS = REPO / "bench" / "results" / "missed.json"


def capture() -> dict:
    """Wrap the registered tier's steps in fer_data.dedup so that their arrays are kept."""
    kept: dict = {}
    search, cap, align = dedup.neighbour_pairs, dedup._best_per_cluster_pair, dedup.registered_pairs

    def neighbours(thumbs, groups, *args, **kwargs):
        out = search(thumbs, groups, *args, **kwargs)
        kept.setdefault("neighbours", out[0])
        return out

    def capped(pairs, score, cluster, *args, **kwargs):
        out = cap(pairs, score, cluster, *args, **kwargs)
        kept.setdefault("capped", out)  # the first call: the candidates of every tier-2 key
        return out

    def aligned(thumbs, pairs, options, *args, **kwargs):
        kept["aligned"] = pairs
        return align(thumbs, pairs, options, *args, **kwargs)

    dedup.neighbour_pairs, dedup._best_per_cluster_pair = neighbours, capped
    dedup.registered_pairs = aligned
    return kept


def has_pair(pairs: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Whether each (a, b) is among the unordered pairs of faces 0..n-1."""
    def key(x, y):
        return np.minimum(x, y).astype(np.int64) * n + np.maximum(x, y)

    return np.isin(key(a, b), key(pairs[:, 0], pairs[:, 1]))


def reaches(pairs: np.ndarray, faces: np.ndarray, target: np.ndarray,
            cluster: np.ndarray) -> np.ndarray:
    """Whether each face (distinct) has a pair with some face of its target cluster."""
    where = np.full(len(cluster), -1)
    where[faces] = np.arange(len(faces))
    both = np.concatenate([pairs, pairs[:, ::-1]])
    k = where[both[:, 0]]
    k = k[(k >= 0) & (cluster[both[:, 1]] == target[np.maximum(k, 0)])]
    out = np.zeros(len(faces), bool)
    out[k] = True
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-scale"))
    parser.add_argument("--save", type=Path, help="write the arrays to this .npz")
    args = parser.parse_args()
    layout = StorageLayout.from_env(storage_dir=str(args.work / "storage"))
    faces = read_table(layout.table("face_crops", PARTITION), columns=dedup.INDEX_COLUMNS)
    n = faces.num_rows
    row = {face: k for k, face in enumerate(faces.column("image_id").to_pylist())}
    manifest = pq.read_table(args.work / "manifest.parquet", columns=["image_id", "origin_id"])
    copy = np.array([row[f] for f in manifest.column("image_id").to_pylist()])
    origin = np.array([row[f] for f in manifest.column("origin_id").to_pylist()])
    kept = capture()
    start = time.perf_counter()
    found = dedup.duplicate_pairs(faces, dedup.DedupOptions(dataset_priority=keeper_priority()))
    seconds = time.perf_counter() - start
    final = clusters(n, np.concatenate(list(found.values())))
    missed = final[copy] != final[origin]
    q, o = copy[missed], origin[missed]
    sizes = np.bincount(final)
    result = {
        "faces": n, "duplicate_pairs_seconds": round(seconds, 1), "missed": int(missed.sum()),
        "origin_among_neighbours": int(has_pair(kept["neighbours"], q, o, n).sum()),
        "origin_after_cluster_pair_cap": int(has_pair(kept["capped"], q, o, n).sum()),
        "origin_aligned": int(has_pair(kept["aligned"], q, o, n).sum()),
        "a_neighbour_in_origin_cluster": int(reaches(kept["neighbours"], q, final[o], final).sum()),
        "aligned_onto_origin_cluster": int(reaches(kept["aligned"], q, final[o], final).sum()),
        "aligned_pairs": len(kept["aligned"]),
        "missed_in_clusters_of": {str(k): int(v) for k, v in zip(
            *np.unique(np.minimum(sizes[final[q]], 6), return_counts=True), strict=True)},
        "origins_in_clusters_over_1000": int((sizes[final[o]] > 1000).sum()),
    }
    print(json.dumps(result, indent=1))
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    if args.save:
        np.savez(args.save, copy=q, origin=o, cluster=final, **kept)


if __name__ == "__main__":
    main()
