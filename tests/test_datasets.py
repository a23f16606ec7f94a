"""The dataset registry: an incomplete entry fails at once, and one new entry is all a dataset
needs to reach the demo writer, ingestion, the face policy and the de-duplication keeper."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from fer_data import datasets, demo
from fer_data.datasets import Dataset, check_registry, entry
from fer_data.defs.dedup import DedupConfig, dedup_settings
from fer_data.defs.faces import FaceConfig
from fer_data.ingest import ingest_dataset, missing_note


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change, problem", [
    ({"readers": ()}, "no reader"),
    ({"face_policy": ("mtcnn", "none")}, "face_policy"),
    ({"face_policy": ("retinaface",)}, "face_policy"),
    ({"source": " "}, "no source"),
    ({"demo": None}, "no demo writer"),
    ({"name": "my-set"}, "identifier"),
])
def test_an_incomplete_entry_is_refused_with_what_it_lacks(change, problem):
    with pytest.raises(ValueError, match=problem):
        replace(entry("jaffe"), **change)


def test_names_and_keeper_ranks_must_be_unique():
    jaffe = entry("jaffe")
    with pytest.raises(ValueError, match="names repeat"):
        check_registry([jaffe, replace(jaffe, keeper_rank=99)])
    with pytest.raises(ValueError, match="ranks repeat"):
        check_registry([jaffe, replace(jaffe, name="jaffe2")])
    check_registry(datasets.REGISTRY)


def test_the_registry_lists_each_dataset_once_with_a_demo_that_its_reader_reads(demo_raw):
    assert datasets.DATASETS == tuple(d.name for d in datasets.REGISTRY)
    for d in datasets.REGISTRY:
        result = ingest_dataset(demo_raw, d.name)
        assert result.records.num_rows > 0 and result.accounted, d.name
        assert result.reader in {r.name for r in d.readers}, d.name


def test_a_new_entry_flows_through_demo_ingest_face_policy_and_keeper(tmp_path, monkeypatch):
    before = tmp_path / "before"
    datasets.write_demo(before, demo.DemoSpec(datasets=("jaffe",)))
    copy = Dataset("jaffe_copy", entry("jaffe").readers, ("haar",), keeper_rank=-1,
                   source="a second JAFFE download, for this test", demo=demo.jaffe)
    monkeypatch.setattr(datasets, "REGISTRY", (*datasets.REGISTRY, copy))

    raw = tmp_path / "raw"
    counts = datasets.write_demo(raw)
    assert counts["jaffe_copy"] > 0 and set(counts) == {d.name for d in datasets.REGISTRY}
    # an added entry changes no other dataset's demo files
    assert digest(raw / "jaffe") == digest(before / "jaffe")
    result = ingest_dataset(raw, "jaffe_copy")
    assert result.accounted and result.records.num_rows == counts["jaffe_copy"]
    assert "a second JAFFE download" in missing_note("jaffe_copy", tmp_path / "absent")
    assert FaceConfig().policy["jaffe_copy"] == ["haar"]
    assert dedup_settings(DedupConfig()).dataset_priority[0] == "jaffe_copy"
