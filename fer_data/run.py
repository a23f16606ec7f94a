"""Materialize the whole pipeline into the Dagster instance at $DAGSTER_HOME, datasets in
parallel, then print where the outputs are. This is what `make run` calls.

    python -m fer_data.run [--partition fer2013 ...] [--jobs N] [--force] [--config run.yaml]
                           [--datasets-only]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml
from dagster import AssetKey, AssetRecordsFilter, AssetSelection, DagsterInstance, materialize

from fer_data import definitions
from fer_data.defs.executor import default_max_concurrent
from fer_data.defs.partitions import dataset_partitions
from fer_data.defs.resources import StorageResource
from fer_data.ingest import folder_fingerprint
from fer_data.instance import ensure_instance_config
from fer_data.storage import StorageLayout

# Assets too slow for every run: materialize them from the UI or `dagster asset materialize`.
ON_DEMAND = {"augmentation_experiment"}
SUMMARY_KEYS = ("records", "rejects", "faces", "detection_rate", "kept", "label_conflict_clusters",
                "test_accuracy", "profile", "step", "judge_hit_rate", "ssim_to_source",
                "gate_pass_rate", "flagged", "dagster/row_count")
# Dagster's console logger prints every engine event at DEBUG; a terminal run wants INFO.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@functools.cache
def _defs():
    return definitions.defs()


def _name(assets_def) -> str:
    return assets_def.key.to_user_string()


def _latest(instance: DagsterInstance, name: str, partition: str | None):
    """The latest materialization record of an asset (partition), or None."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(name),
                           asset_partitions=[partition] if partition else None), limit=1).records
    return records[0] if records else None


def _current_code(record, assets_def) -> bool:
    tags = record.asset_materialization.tags or {}
    return tags.get("dagster/code_version") == assets_def.code_versions_by_key[assets_def.key]


def partition_is_current(instance, partitioned, layout: StorageLayout, partition: str) -> bool:
    """raw_images[partition] last ran on today's raw folder (its data version is the folder
    fingerprint), and every partitioned asset has since run with today's code."""
    raw = _latest(instance, "raw_images", partition)
    if raw is None or (raw.asset_materialization.tags or {}).get("dagster/data_version") != \
            folder_fingerprint(layout.raw_dir / partition):
        return False
    for assets_def in partitioned:
        record = _latest(instance, _name(assets_def), partition)
        if record is None or not _current_code(record, assets_def) \
                or record.storage_id < raw.storage_id \
                or not layout.table(_name(assets_def), partition).exists():
            return False
    return True


def collection_is_current(instance, unpartitioned) -> bool:
    """Every whole-collection asset has a materialization with today's code version."""
    for assets_def in unpartitioned:
        record = _latest(instance, _name(assets_def), None)
        if record is None or not _current_code(record, assets_def):
            return False
    return True


def run(partitions: list[str], force: bool = False, ops_config: dict | None = None,
        jobs: int = 1, datasets_only: bool = False) -> bool:
    """Run every partitioned asset once per partition whose raw folder or code changed, `jobs`
    partitions at a time, then (unless `datasets_only`) everything unpartitioned if anything
    upstream ran (or `force`).
    `ops_config` is Dagster run config for the assets, as in the UI's launchpad:
    {"stargan_model": {"config": ...}}."""
    instance = DagsterInstance.get()
    layout = StorageLayout.from_env()
    partitioned, stale = _selection(partitioned=True), []
    for key in partitions:
        if not force and partition_is_current(instance, partitioned, layout, key):
            print(f"== {key}: unchanged (raw folder and code), skipped", flush=True)
        else:
            stale.append(key)
    ok = True
    if stale:
        print(f"== {', '.join(stale)} ({min(jobs, len(stale))} at a time)", flush=True)
        ok = _materialize_partitions(stale, ops_config, jobs)
    if datasets_only:
        return ok
    unpartitioned = _selection(partitioned=False)
    if stale or force or not collection_is_current(instance, unpartitioned):
        print("== all datasets", flush=True)
        ok &= _materialize(unpartitioned, instance, None, ops_config)
    else:
        print("== all datasets: nothing upstream changed, skipped", flush=True)
    return ok


def _selection(partitioned: bool) -> list:
    """The dataset-partitioned assets, or the whole-collection ones `make run` materializes."""
    if partitioned:
        return [a for a in _defs().assets if a.partitions_def == dataset_partitions]
    return [a for a in _defs().assets if a.partitions_def is None and _name(a) not in ON_DEMAND]


def _materialize_partitions(partitions: list[str], ops_config: dict | None, jobs: int) -> bool:
    """Each partition in its own run; `jobs` runs at a time in spawned processes, each given its
    share of the cores for torch and OpenCV so that together they do not oversubscribe them."""
    if jobs <= 1 or len(partitions) <= 1:
        return all([_materialize_partition(key, ops_config) for key in partitions])  # run all
    workers = min(jobs, len(partitions))
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                             initializer=_limit_threads, initargs=(threads,)) as pool:
        return all(pool.map(_materialize_partition, partitions, [ops_config] * len(partitions)))


def _limit_threads(threads: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def _materialize_partition(partition: str, ops_config: dict | None) -> bool:
    return _materialize(_selection(partitioned=True), DagsterInstance.get(), partition, ops_config)


def materialize_assets(selected, partition: str | None = None, *,
                       storage: StorageResource | None = None, settings=None,
                       instance: DagsterInstance | None = None, ops_config: dict | None = None,
                       raise_on_error: bool = True):
    """One in-process run of `selected` (asset names or definitions) with the pipeline's
    resources, optionally into another storage layout or with other settings: the one runner
    that `make run`, bench/ and the tests share. `ops_config` as in the launchpad; keys of
    assets not selected are dropped."""
    names = {s if isinstance(s, str) else _name(s) for s in selected}
    resources = dict(_defs().resources or {})
    if storage is not None:
        resources["storage_resource"] = storage
    if settings is not None:
        resources["settings"] = settings
    ops = {k: v for k, v in (ops_config or {}).items() if k in names}
    return materialize(list(_defs().assets), selection=AssetSelection.assets(*names),
                       partition_key=partition,
                       instance=instance or DagsterInstance.ephemeral(),
                       resources=resources, run_config={**RUN_CONFIG, "ops": ops},
                       raise_on_error=raise_on_error)


def partitioned_assets() -> list[str]:
    return [_name(a) for a in _selection(partitioned=True)]


def collection_assets() -> list[str]:
    """What `make run` materializes after the partitions (ON_DEMAND left out)."""
    return [_name(a) for a in _selection(partitioned=False)]


def _materialize(selected, instance, partition: str | None, ops_config: dict | None = None) -> bool:
    result = materialize_assets(selected, partition, instance=instance, ops_config=ops_config,
                                raise_on_error=False)
    lines = []
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        name = event.asset_key.to_user_string() + (f"[{partition}]" if partition else "")
        lines.append(f"   {name}: " + ", ".join(f"{k} {meta[k].value}" for k in SUMMARY_KEYS
                                                 if k in meta))
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            lines.append(f"   CHECK FAILED {check.asset_key.to_user_string()}.{check.check_name}")
    if not result.success:
        lines.append(f"   RUN FAILED {result.run_id} ({partition or 'all datasets'})")
    if lines:
        print("\n".join(lines), flush=True)  # one write, so parallel partitions do not interleave
    return result.success


@contextlib.contextmanager
def one_run_at_a_time(home: Path):
    """Refuse a second `make run` on the same instance folder while one is running (an OS
    lock on a file there, released however the first run ends, even by SIGKILL): two runs
    would write the same tables."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".fer_run.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise SystemExit(f"another `make run` ({holder}) is running on {home}: wait for "
                             "it to finish, or give this one its own DAGSTER_HOME") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        yield


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", action="append",
                        choices=dataset_partitions.get_partition_keys(),
                        help="only these datasets (repeatable); default all")
    parser.add_argument("--force", action="store_true",
                        help="re-run everything, even what is up to date")
    parser.add_argument("--jobs", type=int, default=default_max_concurrent(),
                        help="datasets processed at once (default: FER_MAX_CONCURRENT, else the "
                        "CPU count)")
    parser.add_argument("--config", type=Path, help="YAML run config for the assets, as in "
                        "the launchpad: {ops: {stargan_model: {config: {profile: full}}}}")
    parser.add_argument("--datasets-only", action="store_true",
                        help="only the per-dataset assets (ingest + faces), not the collection")
    args = parser.parse_args(argv)
    home = ensure_instance_config().parent
    ops = yaml.safe_load(args.config.read_text()).get("ops", {}) if args.config else None
    with one_run_at_a_time(home):
        ok = run(args.partition or dataset_partitions.get_partition_keys(), args.force, ops,
                 args.jobs, args.datasets_only)
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
