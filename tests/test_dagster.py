"""The code location loads, and raw_images materializes for every partition of the demo data."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from fer_data.datasets import DATASETS
from fer_data.definitions import defs as load_defs
from fer_data.defs.ingest import raw_images
from fer_data.defs.resources import StorageResource
from fer_data.storage import StorageLayout, read_table, write_table


def test_definitions_load_with_every_dataset_partition():
    job = load_defs().resolve_implicit_global_asset_job_def()
    assert "raw_images" in {n.name for n in job.graph.node_defs}
    assert raw_images.partitions_def.get_partition_keys() == list(DATASETS)
    assert [c.name for c in raw_images.check_specs] == ["inputs_accounted"]


def test_raw_images_materializes_all_partitions_on_demo_data(demo_raw, tmp_path):
    storage = tmp_path / "storage"
    resources = {"storage_resource": StorageResource(raw_dir=str(demo_raw),
                                                     storage_dir=str(storage))}
    instance = DagsterInstance.ephemeral()
    for dataset in DATASETS:
        result = materialize([raw_images], partition_key=dataset, resources=resources,
                             instance=instance)
        assert result.success
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        checks = result.get_asset_check_evaluations()
        assert [c.passed for c in checks] == [True]
        table = pq.read_table(storage / "raw_images" / f"{dataset}.parquet")
        rejects = pq.read_table(storage / "rejects" / "raw_images" / f"{dataset}.parquet")
        assert table.num_rows == meta["records"].value > 0
        assert rejects.num_rows == meta["rejects"].value
        assert set(table.column("dataset").to_pylist()) == {dataset}


def test_missing_dataset_materializes_zero_rows_with_guidance(tmp_path):
    resources = {"storage_resource": StorageResource(raw_dir=str(tmp_path / "raw"),
                                                     storage_dir=str(tmp_path / "s"))}
    result = materialize([raw_images], partition_key="jaffe", resources=resources)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert result.success and meta["records"].value == 0
    assert "zenodo" in meta["note"].value
    assert pq.read_table(tmp_path / "s" / "raw_images" / "jaffe.parquet").num_rows == 0


def test_on_bad_file_error_fails_the_partition(tmp_path):
    (tmp_path / "raw" / "jaffe").mkdir(parents=True)
    (tmp_path / "raw" / "jaffe" / "KA.AN1.39.tiff").write_bytes(b"II*\0broken")
    resources = {"storage_resource": StorageResource(raw_dir=str(tmp_path / "raw"),
                                                     storage_dir=str(tmp_path / "s"))}
    config = {"ops": {"raw_images": {"config": {"on_bad_file": "error"}}}}
    result = materialize([raw_images], partition_key="jaffe", resources=resources,
                         run_config=config, raise_on_error=False)
    assert not result.success
    assert not (tmp_path / "s" / "raw_images" / "jaffe.parquet").exists()


def test_storage_layout_env_and_fsspec_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_RAW_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FER_STORAGE_DIR", raising=False)
    layout = StorageLayout.from_env()
    assert str(layout.raw_dir) == str(tmp_path / "r")
    assert str(layout.table("raw_images", "kdef")) == str(
        tmp_path / "home" / "storage" / "raw_images" / "kdef.parquet")
    remote = StorageLayout.from_env(storage_dir="memory://fer-test/storage")
    table = pq.read_table(write_table(
        pq.read_table(_tiny_parquet(tmp_path)), remote.table("raw_images", "kdef")).open("rb"))
    assert table.column("x").to_pylist() == [1, 2]
    assert read_table(remote.table("raw_images", "kdef")).num_rows == 2


def test_local_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "t" / "x.parquet"
    write_table(pa.table({"x": [1]}), target)

    write_bytes = Path.write_bytes

    def crash_halfway(path, data):  # a disk-full or a killed process mid-write
        write_bytes(path, data[: len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_bytes", crash_halfway)
    with pytest.raises(OSError):
        write_table(pa.table({"x": [2]}), target)
    monkeypatch.undo()
    assert pq.read_table(target).column("x").to_pylist() == [1]
    assert [p.name for p in target.parent.iterdir()] == ["x.parquet"]


def _tiny_parquet(tmp_path):
    path = tmp_path / "tiny.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    return path
