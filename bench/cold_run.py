"""A cold `make run` on real data, stage by stage, and the de-dup index against imagededup.

    .venv/bin/python bench/cold_run.py [--shared ../shared/datasets] [--jobs 2]
                                       [--imagededup /tmp/imagededup] [--work DIR]

raw/ = the real FER2013 image export + CK+48 + a Kaggle-style repackage of both (about 38k
images, fer_data.demo.repackage), in their original layouts. Then, one after the other:

1. the partition phase as `make run` starts it: `python -m fer_data.run --datasets-only` in a
   fresh process with a fresh DAGSTER_HOME (raw_images + face_crops for every dataset, --jobs at
   a time): wall time, and per dataset the seconds and images/s that the assets record in their
   metadata (the Dagster UI shows the same figures);
2. face_index and splits over all of it, in the same instance;
3. on the 35,887 FER2013 files: imagededup's PHash (encode_images + find_duplicates at distance
   4, in its own process) against the project's index over the same faces (build_index on
   face_crops' fer2013 keys: digests, three pHashes with mirrors, verified tier, clusters).

imagededup is not a project dependency: install it into a folder of its own,
    pip install --no-deps --target /tmp/imagededup imagededup scikit-learn joblib \\
        threadpoolctl cloudpickle narwhals
Beside each figure the bench prints the one measured before this work (issue 15, 2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED, run_imagededup
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from fer_data.datasets import keeper_priority
from fer_data.dedup import DedupOptions, build_index
from fer_data.run import materialize_assets
from fer_data.storage import StorageLayout, read_table

# measured before (issue 15): 2 cores, FER2013 + a 40k repackage + CK+48 (77,274 faces)
BEFORE = {"partition phase": 840.0, "fer2013 (alone)": 453.0, "face_index": 28.0,
          "splits": 1.0, "imagededup PHash": 268.7, "project index (FER2013)": 13.0}

def build_raw(shared: Path, work: Path) -> Path:
    from leaks import build_raw as with_repackage

    from fer_data.demo.repackage import RepackageSpec

    raw, planted = with_repackage(shared, work, RepackageSpec())
    print(f"raw: FER2013 export + CK+48 + a repackage with {len(planted):,} planted copies")
    return raw


def stage_seconds(instance: DagsterInstance, asset: str, partition: str | None) -> dict:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset),
                           asset_partitions=[partition] if partition else None), limit=1).records
    meta = records[0].asset_materialization.metadata
    return {k: meta[k].value for k in ("seconds", "images_per_second") if k in meta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--imagededup", type=Path, default=Path("/tmp/imagededup"),
                        help="folder imagededup was pip-installed into (--target)")
    parser.add_argument("--work", type=Path, help="keep the run here (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        raw = build_raw(args.shared, work)
        home = work / "dagster_home"
        home.mkdir()
        env = {**os.environ, "DAGSTER_HOME": str(home), "FER_RAW_DIR": str(raw),
               "FER_STORAGE_DIR": str(work / "storage"), "FER_CURATED_DIR": str(work / "curated")}
        datasets = ["fer2013", "ckplus", "face_expression"]
        command = [sys.executable, "-m", "fer_data.run", "--datasets-only", "--jobs",
                   str(args.jobs)] + [f"--partition={d}" for d in datasets]
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        phase = time.perf_counter() - start

        os.environ.update(env)
        instance = DagsterInstance.get()
        layout = StorageLayout.from_env()
        collection = {}
        for asset in ("face_index", "splits"):
            start = time.perf_counter()
            assert materialize_assets([asset], instance=instance).success
            collection[asset] = time.perf_counter() - start

        print(f"\nCold partition phase (`python -m fer_data.run --datasets-only --jobs "
              f"{args.jobs}`, fresh process and instance): {phase:.0f} s "
              f"(before: about {BEFORE['partition phase']:.0f} s, "
              f"{BEFORE['partition phase'] / phase:.1f}x)")
        print("| dataset | images | raw_images s | face_crops s | face_crops images/s |")
        print("|---|---:|---:|---:|---:|")
        faces_total = 0
        for dataset in datasets:
            rows = read_table(layout.table("raw_images", dataset), columns=["image_id"]).num_rows
            faces_total += rows
            ingest = stage_seconds(instance, "raw_images", dataset)
            crops = stage_seconds(instance, "face_crops", dataset)
            print(f"| {dataset} | {rows:,} | {ingest['seconds']:.1f} | {crops['seconds']:.1f} | "
                  f"{crops['images_per_second']:,.0f} |")
        for name, seconds in collection.items():
            print(f"{name} over {faces_total:,} images: {seconds:.1f} s "
                  f"(before: {BEFORE[name]:.0f} s)")

        fer = read_table(layout.table("face_crops", "fer2013"))
        start = time.perf_counter()
        result = build_index(fer, DedupOptions(dataset_priority=keeper_priority()))
        ours = time.perf_counter() - start
        peer = run_imagededup(raw / "fer2013", args.imagededup)
        print(f"\nDe-dup on the {fer.num_rows:,} FER2013 faces, same files, one after the other:")
        print(f"  project index (keys from face_crops; pairs, clusters, policy): {ours:.1f} s, "
              f"{result.pairs:,} pairs (before: {BEFORE['project index (FER2013)']:.1f} s)")
        if "error" in peer:
            print(f"  {peer['error']}")
            return
        peer_result = peer
        print(f"  imagededup PHash: encode {peer_result['encode']:.1f} s + find_duplicates "
              f"(distance 4) = {peer_result['total']:.1f} s for {peer_result['files']:,} files, "
              f"{peer_result['with_duplicates']:,} with a duplicate "
              f"(before: {BEFORE['imagededup PHash']:.1f} s): "
              f"{peer_result['total'] / ours:.0f}x the project's index")


if __name__ == "__main__":
    main()
