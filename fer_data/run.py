"""Materialize the whole pipeline into the Dagster instance at $DAGSTER_HOME, partition by
partition, then print where the outputs are. This is what `make run` calls.

    python -m fer_data.run [--partition fer2013 ...]
"""

from __future__ import annotations

import argparse
import os
import sys

from dagster import AssetSelection, DagsterInstance, materialize

from fer_data.definitions import defs
from fer_data.defs.partitions import dataset_partitions
from fer_data.storage import StorageLayout


def all_assets() -> list:
    return list(defs.assets or [])


# Assets too slow for every run: materialize them from the UI or `dagster asset materialize`.
ON_DEMAND = {"vit_baseline"}
# Dagster's console logger prints every engine event at DEBUG; a terminal run wants INFO.
SUMMARY_KEYS = ("records", "rejects", "faces", "detection_rate", "kept", "label_conflict_clusters",
                "dagster/row_count")
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def run(partitions: list[str]) -> bool:
    """Run every partitioned asset once per partition, then everything unpartitioned."""
    instance = DagsterInstance.get()
    assets = all_assets()
    resources = dict(defs.resources or {})
    partitioned = [a for a in assets if a.partitions_def == dataset_partitions]
    unpartitioned = [a for a in assets if a.partitions_def is None
                     and not ON_DEMAND & {k.to_user_string() for k in a.keys}]
    ok = True
    for key in partitions:
        print(f"== {key}", flush=True)
        ok &= _materialize(assets, partitioned, instance, resources, key)
    if unpartitioned:
        print("== all datasets", flush=True)
        ok &= _materialize(assets, unpartitioned, instance, resources, None)
    return ok


def _materialize(assets, selected, instance, resources, partition: str | None) -> bool:
    result = materialize(assets, selection=AssetSelection.assets(*selected),
                         partition_key=partition, instance=instance, resources=resources,
                         run_config=RUN_CONFIG, raise_on_error=False)
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        name = event.asset_key.to_user_string() + (f"[{partition}]" if partition else "")
        print(f"   {name}: " + ", ".join(f"{k} {meta[k].value}" for k in SUMMARY_KEYS
                                         if k in meta))
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            print(f"   CHECK FAILED {check.asset_key.to_user_string()}.{check.check_name}")
    return result.success


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", action="append",
                        choices=dataset_partitions.get_partition_keys(),
                        help="only these datasets (repeatable); default all")
    args = parser.parse_args(argv)
    ok = run(args.partition or dataset_partitions.get_partition_keys())
    layout = StorageLayout.from_env()
    print("\nOutputs:")
    print(f"  raw data read from      {layout.raw_dir}")
    print(f"  tables (Parquet)        {layout.storage_dir}/<asset>/<dataset>.parquet")
    print(f"  rejects (with reasons)  {layout.storage_dir}/rejects/<asset>/<dataset>.parquet")
    print(f"  published datasets      {layout.curated_dir}")
    print(f"  Dagster runs            {os.environ.get('DAGSTER_HOME')} (browse with `make ui`)")
    if not ok:
        print("\nSome steps failed: see the log above or `make ui`.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
