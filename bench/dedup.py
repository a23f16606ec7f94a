"""De-duplication speed: index + cluster the 35,887 real FER2013 faces, and 200,000 synthetic
hashes, against an O(n^2) numpy baseline timed on a subset and extrapolated.

    python bench/dedup.py [--data ../shared/datasets/fer2013_images] [--threshold 4]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from fer_data.datasets import keeper_priority
from fer_data.dedup import DedupOptions, build_index, crop_keys, source_keys
from fer_data.hash_search import clusters, near_pairs, popcount64

REPO = Path(__file__).resolve().parents[1]


def brute_force(hashes: np.ndarray, threshold: int, block: int = 2048) -> int:
    """All pairs by blocked XOR + popcount: the O(n^2) baseline."""
    found = 0
    for start in range(0, len(hashes), block):
        part = hashes[start:start + block]
        d = popcount64(part[:, None] ^ hashes[None, start:])
        found += int(np.triu(d <= threshold, 1).sum())
    return found


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=REPO.parent / "shared" / "datasets" / "fer2013_images")
    parser.add_argument("--threshold", type=int, default=4)
    parser.add_argument("--baseline-n", type=int, default=12000)
    args = parser.parse_args()

    files = sorted(args.data.rglob("*.jpg"))
    pixels = [np.asarray(Image.open(f)) for f in files]
    keys = {**crop_keys(pixels), **source_keys(pixels)}  # what face_crops computes
    faces = pa.table({
        "image_id": [f.stem for f in files], "dataset": ["fer2013"] * len(files),
        "source_path": [str(f.relative_to(args.data)) for f in files],
        "label": [f.parent.name for f in files],
        "subject_id": pa.array([None] * len(files), pa.string()),
        "official_split": [f.parent.parent.name for f in files],
        **{k: pa.array(v, pa.binary() if k == "source_thumb" else None) for k, v in keys.items()},
    })
    start = time.perf_counter()
    result = build_index(faces, DedupOptions(threshold=args.threshold,
                                              dataset_priority=keeper_priority()))
    t_real = time.perf_counter() - start
    hashes = np.asarray(faces.column("phash").to_numpy(), dtype=np.int64)
    start = time.perf_counter()
    pairs = near_pairs(hashes, hashes, args.threshold, same_set=True)
    clusters(len(hashes), pairs)
    t_search = time.perf_counter() - start
    sub = hashes[: args.baseline_n]
    start = time.perf_counter()
    base_pairs = brute_force(sub, args.threshold)
    t_base = time.perf_counter() - start
    ours_sub = len(near_pairs(sub, sub, args.threshold, same_set=True))
    scale = (len(hashes) / len(sub)) ** 2
    print(f"FER2013 folders: {len(files):,} faces, threshold {args.threshold}")
    print(f"  full index (keys precomputed; digests, 3 pHashes x mirrors, verified tier, "
          f"clusters, policy): {t_real:.2f} s, "
          f"{result.pairs:,} pairs, {result.exact_groups:,} exact groups "
          f"({result.exact_conflict_groups} with conflicting labels), "
          f"{result.conflict_clusters:,} conflicting clusters")
    print(f"  near-pair search + clustering only: {t_search:.2f} s ({len(pairs):,} pairs)")
    print(f"  O(n^2) baseline on {len(sub):,}: {t_base:.2f} s ({base_pairs:,} pairs; ours "
          f"{ours_sub:,}) -> extrapolated to {len(hashes):,}: {t_base * scale:.1f} s, "
          f"{t_base * scale / t_search:.0f}x slower than ours")

    rng = np.random.default_rng(0)
    synthetic = np.concatenate([hashes, rng.integers(-(2**63), 2**63 - 1, 200_000 - len(hashes),
                                                     dtype=np.int64)])
    start = time.perf_counter()
    pairs = near_pairs(synthetic, synthetic, args.threshold, same_set=True)
    clusters(len(synthetic), pairs)
    t_big = time.perf_counter() - start
    t_base_big = t_base * (len(synthetic) / len(sub)) ** 2
    print(f"200,000 hashes (the real ones + random): {t_big:.2f} s, {len(pairs):,} pairs; "
          f"O(n^2) baseline extrapolated: {t_base_big:.0f} s ({t_base_big / t_big:.0f}x)")
    print(f"peak RSS: {peak_mb():,.0f} MB")


if __name__ == "__main__":
    main()
