"""Which duplicate edges chain different pictures into the largest cluster of the 1M stress set.

Reads the stress set that bench/scale.py built (its face_crops and manifest) and the real
pipeline's face_index (bench/common.real_pipeline), finds every duplicate edge as face_index
does (dedup.duplicate_pairs with the default options), and for the largest cluster prints, per
key: its edges, those between two different real pictures (an origin is its cluster in the
real pipeline's index, so FER2013's own repeats count once) with their thumbnail correlation,
and how many real pictures the largest remaining cluster still joins without that key's
cross-picture edges. A key whose removal splits the cluster is what chains it.

    .venv/bin/python bench/chain.py [--work /tmp/fer-scale] [--real /tmp/fer-real] [--faces N]
                                    [--save-edges edges.npz]

--save-edges keeps every edge by key (`key_<name>` arrays of row pairs) with each face's real
picture (`picture`), so experiments on the graph take seconds instead of a new 5-minute search.

Prints a table and writes bench/results/chain.json. About 9 minutes at 1M faces on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from common import REPO
from scale import PARTITION, pictures_per_cluster, real_picture_of, real_with_index

from fer_data.datasets import keeper_priority
from fer_data.dedup import INDEX_COLUMNS, DedupOptions, correlation, duplicate_pairs, thumbnails
from fer_data.hash_search import clusters
from fer_data.storage import StorageLayout, read_table

RESULTS = REPO / "bench" / "results" / "chain.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-scale"))
    parser.add_argument("--real", type=Path, default=Path("/tmp/fer-real"))
    parser.add_argument("--faces", type=int, default=0, help="only the first this many (0: all)")
    parser.add_argument("--save-edges", type=Path, help="write the edges by key to this .npz")
    args = parser.parse_args()
    real = real_with_index(args.real)
    layout = StorageLayout.from_env(storage_dir=str(args.work / "storage"))
    faces = read_table(layout.table("face_crops", PARTITION), columns=INDEX_COLUMNS)
    faces = faces.slice(0, args.faces or faces.num_rows)
    n = faces.num_rows
    manifest = pq.read_table(args.work / "manifest.parquet", columns=["image_id", "origin_id"])
    origin = dict(zip(*(manifest.column(c).to_pylist() for c in manifest.column_names),
                      strict=True))
    picture = real_picture_of(faces, origin, real)

    def most_pictures(pairs: np.ndarray) -> int:
        return int(pictures_per_cluster(clusters(n, pairs), picture).max())

    start = time.perf_counter()
    found = duplicate_pairs(faces, DedupOptions(dataset_priority=keeper_priority()))
    seconds = time.perf_counter() - start
    if args.save_edges:
        np.savez(args.save_edges, picture=picture, **{f"key_{k}": v for k, v in found.items()})
    every = np.concatenate(list(found.values()))
    cluster = clusters(n, every)
    largest = np.bincount(cluster).argmax()
    thumbs = thumbnails(faces.select(["source_thumb"]))
    rows = {}
    for key, pairs in found.items():
        inside = pairs[cluster[pairs[:, 0]] == largest]
        cross = inside[picture[inside[:, 0]] != picture[inside[:, 1]]]
        score = correlation(thumbs, cross) if len(cross) else np.zeros(0)
        others = [p for p in found.values() if p is not pairs]  # phash may be source_phash
        kept = pairs[picture[pairs[:, 0]] == picture[pairs[:, 1]]]
        rows[key] = {"edges_in_largest": len(inside), "cross_picture": len(cross),
                     "cross_correlation_quartiles": [round(float(q), 3) for q in
                                                     np.quantile(score, [0, .25, .5, .75, 1])]
                     if len(score) else [],
                     "most_pictures_without_its_cross_edges": most_pictures(
                         np.concatenate([*others, kept]))}
    result = {"faces": n, "duplicate_pairs_seconds": round(seconds, 1),
              "largest_cluster_faces": int((cluster == largest).sum()),
              "most_pictures": most_pictures(every), "by_key": rows}
    print(f"{n:,} faces, duplicate_pairs {seconds:.0f} s; largest cluster "
          f"{result['largest_cluster_faces']:,} faces of {result['most_pictures']:,} real pictures")
    print(f"{'key':16s} {'edges':>9s} {'cross':>8s}  {'corr min/q1/median/q3/max':34s} without")
    for key, row in rows.items():
        q = "/".join(f"{v:.2f}" for v in row["cross_correlation_quartiles"])
        print(f"{key:16s} {row['edges_in_largest']:9,d} {row['cross_picture']:8,d}  {q:34s} "
              f"{row['most_pictures_without_its_cross_edges']:,}")
    if not args.faces:
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
