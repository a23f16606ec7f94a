"""Pipeline settings with one owner each: the target class and its top-up goal come from
PipelineSettings (and travel with the generator), the ViT patch size is saved with the model."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from dagster import DagsterInstance, materialize

from fer_data.classifier import build_model, load_model, save_model
from fer_data.defs.resources import PipelineSettings, StorageResource

UNPARTITIONED = ["face_index", "splits", "expression_judge", "stargan_model", "synthetic_faces",
                 "curated_dataset"]


@pytest.mark.parametrize("settings, says", [
    ({"class_set": "fer4_nhsa"}, "set settings.target_class to one of them"),
    ({"class_set": "fer4_hnss", "target_class": "sad"}, "top_up_to 'fear'"),
    ({"target_class": "fear"}, "top_up_to 'fear'"),  # topped up to itself
])
def test_a_target_the_class_set_lacks_fails_at_launch_saying_what_to_set(settings, says):
    with pytest.raises(ValueError, match=says):
        PipelineSettings(**settings)


def test_the_run_stops_before_any_step_when_the_settings_disagree(tmp_path):
    from fer_data.definitions import defs

    d = defs()
    result = materialize([a for a in d.assets if a.partitions_def is None][:1],
                         resources={**d.resources, "storage_resource": StorageResource(
                             storage_dir=str(tmp_path))},
                         run_config={"resources": {"settings": {"config": {
                             "class_set": "fer4_nhsa"}}}},
                         instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    assert not result.get_step_success_events()
    assert not list(tmp_path.rglob("*.parquet"))


def test_fer4_nhsa_with_its_own_target_runs_to_curated(demo_pipeline, tmp_path):
    """The demo's face tables, then everything after them with class set fer4_nhsa and target
    sad topped up to the largest class: the generator records its target, the synthetic rows
    are sad faces, the published set holds only the four classes."""
    from fer_data.definitions import defs

    root, _ = demo_pipeline
    shutil.copytree(root / "storage" / "face_crops", tmp_path / "storage" / "face_crops")
    d = defs()
    resources = {**d.resources,
                 "storage_resource": StorageResource(storage_dir=str(tmp_path / "storage"),
                                                     curated_dir=str(tmp_path / "curated")),
                 "settings": PipelineSettings(class_set="fer4_nhsa", target_class="sad",
                                              top_up_to="max")}
    config = {"ops": {"stargan_model": {"config": {"num_iters": 20}},
                      "expression_judge": {"config": {"epochs": 1, "min_steps": 20}},
                      "synthetic_faces": {"config": {"use_ineligible_generator": True}}}}
    result = materialize([a for a in d.assets if a.key.to_user_string() in UNPARTITIONED],
                         resources=resources, run_config=config,
                         instance=DagsterInstance.ephemeral())
    assert result.success
    record = json.loads((tmp_path / "storage" / "stargan_model" / "model.json").read_text())
    assert record["target"] == "sad" and record["class_set"] == "fer4_nhsa"
    train = pd.read_parquet(tmp_path / "curated" / "fer4_nhsa" / "train.parquet")
    assert set(train["label_name"]) == {"neutral", "happy", "sad", "angry"}
    real = train.loc[~train["is_synthetic"], "label_name"].value_counts()
    report = json.loads((tmp_path / "storage" / "synthetic_faces" / "synthetic_report.json")
                        .read_text())
    # the goal is the largest class's count; a 20-iteration generator's faces may all fail
    # the gate, and those it lets through are sad
    assert report["gate_needed"] == real.max() - real["sad"] > 0
    assert report["gate_attempts"] > 0
    assert set(train.loc[train["is_synthetic"], "label_name"]) <= {"sad"}
    assert report["gate_accepted"] == int(train["is_synthetic"].sum())


def test_a_vit_with_patch_8_reloads_with_patch_8(tmp_path):
    model = build_model("vit", 7, 48, seed=0, patch_size=8).eval()
    path = save_model(tmp_path / "model.pt", model, "vit", tuple("abcdefg"), 48, patch_size=8)
    loaded, classes, state = load_model(path)
    assert state["patch_size"] == 8 and loaded.patch_size == 8 and classes == tuple("abcdefg")
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
