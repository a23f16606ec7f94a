"""A second `make run` with nothing changed recomputes nothing; a changed dataset folder
recomputes only its partition and what depends on it; the raw/ sensor notices the change."""

from __future__ import annotations

import os
from collections import Counter

import pyarrow as pa
import pytest
from dagster import DagsterEventType, DagsterInstance, build_sensor_context

from fer_data import storage
from fer_data.artefacts import load_face_crops
from fer_data.augment import TRAINING_COLUMNS
from fer_data.datasets import write_demo
from fer_data.defs.resources import StorageResource
from fer_data.defs.sensors import raw_folder_sensor
from fer_data.demo import DemoSpec
from fer_data.run import run

CHEAP = {"stargan_model": {"config": {"num_iters": 20}},
         "expression_judge": {"config": {"epochs": 1, "min_steps": 20}},
         "label_issues": {"config": {"folds": 2, "epochs": 1, "min_steps": 10}}}


def materialized(instance: DagsterInstance) -> Counter:
    """Materializations per asset (partition) in the instance."""
    out = Counter()
    for key in instance.get_asset_keys():
        for record in instance.fetch_materializations(key, limit=1000).records:
            partition = record.partition_key
            out[key.to_user_string() + (f"[{partition}]" if partition else "")] += 1
    return out


def test_reruns_only_what_changed(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_demo(raw, DemoSpec(datasets=("jaffe", "kdef")))
    home = tmp_path / "home"
    home.mkdir()
    for name, value in {"DAGSTER_HOME": home, "FER_RAW_DIR": raw,
                        "FER_STORAGE_DIR": tmp_path / "storage",
                        "FER_CURATED_DIR": tmp_path / "curated"}.items():
        monkeypatch.setenv(name, str(value))
    partitions = ["jaffe", "kdef"]

    assert run(partitions, ops_config=CHEAP, jobs=2)  # both datasets at once, in two processes
    instance = DagsterInstance.get()
    first = materialized(instance)
    assert first["raw_images[jaffe]"] == first["face_crops[kdef]"] == 1
    assert first["stargan_model"] == first["curated_dataset"] == 1
    pids = {e.dagster_event.pid for r in instance.get_runs() if r.tags.get("dagster/partition")
            for e in instance.all_logs(r.run_id, of_type=DagsterEventType.RUN_START)}
    assert len(pids) == 2 and os.getpid() not in pids

    assert run(partitions, ops_config=CHEAP)
    assert materialized(instance) == first  # nothing re-executed

    changed = next((raw / "jaffe").rglob("*.tiff"))
    changed.write_bytes(changed.read_bytes())
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    assert run(partitions, ops_config=CHEAP)
    third = materialized(instance) - first
    assert third["raw_images[jaffe]"] == third["face_crops[jaffe]"] == 1
    assert third["raw_images[kdef]"] == third["face_crops[kdef]"] == 0
    assert third["face_index"] == third["curated_dataset"] == 1


def test_sensor_requests_new_and_changed_folders(tmp_path):
    raw = tmp_path / "raw"
    write_demo(raw, DemoSpec(datasets=("jaffe",)))
    resources = {"storage_resource": StorageResource(raw_dir=str(raw))}
    first = raw_folder_sensor(build_sensor_context(cursor=None, resources=resources))
    assert [r.partition_key for r in first.run_requests] == ["jaffe"]
    quiet = raw_folder_sensor(build_sensor_context(cursor=first.cursor, resources=resources))
    assert quiet.run_requests == []
    write_demo(raw, DemoSpec(datasets=("kdef",)))
    (next((raw / "jaffe").rglob("*.tiff"))).unlink()
    later = raw_folder_sensor(build_sensor_context(cursor=first.cursor, resources=resources))
    assert sorted(r.partition_key for r in later.run_requests) == ["jaffe", "kdef"]


def test_a_table_written_by_an_older_version_is_a_clear_error(tmp_path):
    """A face_crops partition from before a column existed (an old storage/ kept across an
    upgrade) names the missing column and what to do, not pyarrow's FieldRef error."""
    layout = storage.StorageLayout.from_env(str(tmp_path / "raw"), str(tmp_path / "storage"),
                                            str(tmp_path / "curated"))
    old = pa.table({name: pa.array([], pa.string()) for name in TRAINING_COLUMNS
                    if name != "phash"})
    storage.write_table(old, layout.table("face_crops", "fer2013"))
    with pytest.raises(ValueError, match=r"\['phash'\].*materialize"):
        load_face_crops(layout, TRAINING_COLUMNS)
    assert load_face_crops(layout, ["image_id"])[0].num_rows == 0  # what it has still reads
