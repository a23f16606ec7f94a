"""The classifier training command end to end on the demo pipeline's published dataset, the
shared training loop's determinism, and a setting combination that cannot work failing at
launch."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from dagster import DagsterInstance, materialize

from fer_data.classifier import FaceTensors, FitOptions, build_model, fit, load_split
from fer_data.evaluate import parse_args, train_classifier
from fer_data.labels import CLASS_SETS


@pytest.mark.parametrize("model", ["cnn", "vit"])
def test_one_epoch_writes_metrics_confusion_matrix_and_checkpoint(demo_pipeline, tmp_path,
                                                                  model):
    root, _ = demo_pipeline
    data = root / "curated" / "fer7"
    run = tmp_path / "run"
    config = parse_args(["--data", str(data), "--out", str(run), "--model", model,
                         "--epochs", "1", "--batch-size", "32", "--synthetic", "exclude",
                         "--class-weighted"])
    result = train_classifier(config, log=lambda m: None)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved.keys() >= {"accuracy", "macro_f1", "per_class", "confusion_matrix",
                            "test_rows", "model", "seed"}
    assert all(math.isfinite(saved[k]) for k in ("accuracy", "macro_f1"))
    assert math.isfinite(saved["per_class"]["disgust"]["f1"])
    assert set(saved["per_class"]) == set(CLASS_SETS["fer7"])
    test_rows = len(load_split(data, "test", synthetic=False))
    assert sum(map(sum, saved["confusion_matrix"])) == saved["test_rows"] == test_rows
    real = load_split(data, "train", synthetic=False)
    assert saved["train_rows"] == len(real) and saved["synthetic_rows"] == 0
    assert saved["train_rows"] < len(load_split(data, "train"))  # synthetic rows left out
    assert result["accuracy"] == saved["accuracy"] and saved["model"] == model
    for name in ("confusion_matrix.png", "config.json", "model.pt", "history.json"):
        assert (run / name).stat().st_size > 0


def test_oversampling_draws_the_named_class_more_often():
    from fer_data.classifier import batches

    labels = torch.tensor([0] * 90 + [1] * 10)
    data = FaceTensors(torch.zeros(100, 1, 8, 8, dtype=torch.uint8), labels, ("a", "b"))
    drawn = torch.cat(list(batches(data, FitOptions(batch_size=10, oversample={"b": 9.0}),
                                   torch.Generator().manual_seed(0))))
    share = float((labels[drawn] == 1).float().mean())
    assert 0.35 < share < 0.65  # 10 rows x 9 against 90 rows: about half the draws
    with pytest.raises(ValueError, match="not in classes"):
        list(batches(data, FitOptions(oversample={"c": 2.0}), torch.Generator()))
    # class b's 5 real rows drawn 9x, its 5 synthetic ones not at all: every b draw is real
    synthetic = torch.zeros(100, dtype=torch.bool)
    synthetic[95:] = True
    data = FaceTensors(data.images, labels, ("a", "b"), synthetic)
    options = FitOptions(batch_size=10, oversample={"b": 9.0}, oversample_synthetic={"b": 0.0})
    drawn = torch.cat(list(batches(data, options, torch.Generator().manual_seed(0))))
    b = drawn[labels[drawn] == 1]
    assert len(b) > 20 and not synthetic[b].any()


def test_training_is_deterministic_given_the_seed_and_leaves_global_rng_alone():
    g = torch.Generator().manual_seed(1)
    data = FaceTensors(torch.randint(0, 255, (64, 1, 16, 16), dtype=torch.uint8, generator=g),
                       torch.arange(64) % 3, ("a", "b", "c"))
    before = torch.random.get_rng_state()

    def weights(seed):
        model = build_model("cnn", 3, 16, seed=seed)
        fit(model, data, FitOptions(epochs=2, batch_size=16, seed=seed), log=lambda m: None)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))
    assert torch.equal(torch.random.get_rng_state(), before)


def test_face_size_the_vit_cannot_patch_fails_at_launch_with_what_to_set(demo_raw, tmp_path):
    from fer_data.defs.faces import face_crops
    from fer_data.defs.ingest import raw_images
    from fer_data.defs.resources import FaceDetector, PipelineSettings, StorageResource

    with pytest.raises(ValueError, match="face_size 64 is not a multiple of vit_patch_size 6: "
                       "set face_size to a multiple of 6"):
        PipelineSettings(face_size=64)
    storage = tmp_path / "storage"
    result = materialize(
        [raw_images, face_crops], partition_key="jaffe", instance=DagsterInstance.ephemeral(),
        resources={"storage_resource": StorageResource(raw_dir=str(demo_raw),
                                                       storage_dir=str(storage)),
                   "face_detector": FaceDetector(),
                   "settings": PipelineSettings.configure_at_launch()},
        run_config={"resources": {"settings": {"config": {"face_size": 64}}}},
        raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_failure][0]
    assert "vit_patch_size" in str(failure.event_specific_data)
    assert not (storage / "face_crops").exists()  # failed before any work


def test_expression_judge_trains_on_real_training_faces_only(demo_pipeline):
    import pyarrow.parquet as pq

    from fer_data.artefacts import judge_dir
    from fer_data.judge import load_judge
    from fer_data.storage import StorageLayout

    root, result = demo_pipeline
    layout = StorageLayout.from_env(storage_dir=str(root / "storage"))
    judge, saved = load_judge(judge_dir(layout))
    splits = pq.read_table(root / "storage" / "splits" / "all.parquet").to_pandas()
    fer7 = splits[splits["label"].isin(CLASS_SETS["fer7"])]
    assert saved["train_rows"] == (fer7["split"] == "train").sum()  # no val/test/synthetic
    assert saved["test_rows"] == (fer7["split"] == "test").sum()
    assert judge.classes == CLASS_SETS["fer7"]
    assert saved["accuracy"] > 2 / 7  # chance is 1/7 on 7 balanced-ish classes
    assert 1 <= saved["best_epoch"] <= len(saved["history"])
    meta = [e.materialization.metadata for e in result.get_asset_materialization_events()
            if e.asset_key.to_user_string() == "expression_judge"][0]
    assert meta["test_accuracy"].value == round(saved["accuracy"], 4)
    assert "confusion_matrix" in meta and "test_recall" in meta


def test_augmentation_experiment_runs_every_variant_once_and_resumes(demo_pipeline, tmp_path):
    from fer_data.evaluate import VARIANTS, run_experiment, summary_table, training_rows_table

    root, _ = demo_pipeline
    data = root / "curated" / "fer7"
    results = tmp_path / "results"
    first = run_experiment(data, results, tmp_path / "runs", "disgust", "fear", seeds=(0,),
                           log=lambda m: None, epochs=1, max_steps=2)
    assert sorted(r["variant"] for r in first) == sorted(VARIANTS)
    by = {r["variant"]: r for r in first}
    real = load_split(data, "train", synthetic=False)
    counts = dict(zip(real.classes, real.counts().tolist(), strict=True))
    unflagged = load_split(data, "train", synthetic=False, flagged=False)
    assert 0 < len(unflagged) < len(real)
    assert by["audited"]["train_counts"] == dict(zip(
        unflagged.classes, unflagged.counts().tolist(), strict=True))
    for variant, record in by.items():
        with_synthetic = variant.startswith("stargan")
        assert (record["synthetic_rows"] > 0) == with_synthetic
        if variant == "audited":
            continue
        # the synthetic rows published (the gate may fall short of fear's count) join disgust
        assert record["train_counts"]["disgust"] == counts["disgust"] + record["synthetic_rows"]
        assert record["train_counts"]["disgust"] <= counts["fear"]
        assert record.keys() >= {
            "model", "variant", "seed", "accuracy", "macro_f1", "disgust_f1"}
    # the stargan runs name the generator their synthetic rows came from
    published = pd.read_parquet(data / "train.parquet", columns=["generator", "is_synthetic"])
    made_by = sorted(published.loc[published["is_synthetic"], "generator"].unique())
    assert by["stargan"]["generators"] == made_by and len(made_by) == 1
    assert by["plain"]["generators"] == []
    config = json.loads((tmp_path / "runs" / "cnn_oversampled_seed0" / "config.json")
                        .read_text())
    assert config["oversample"] == {"disgust": counts["fear"] / counts["disgust"]}
    # the top-up + oversampling: fear's count of disgust draws, half real and half synthetic
    config = json.loads((tmp_path / "runs" / "cnn_stargan_oversampled_seed0" / "config.json")
                        .read_text())
    made = by["stargan_oversampled"]["synthetic_rows"]
    assert config["oversample"] == {"disgust": counts["fear"] / 2 / counts["disgust"]}
    assert config["oversample_synthetic"] == {"disgust": counts["fear"] / 2 / made}
    assert json.loads((tmp_path / "runs" / "cnn_class_weighted_seed0" / "config.json")
                      .read_text())["class_weighted"]
    trained = []
    again = run_experiment(data, results, tmp_path / "runs", "disgust", "fear", seeds=(0,),
                           log=trained.append, epochs=1, max_steps=2)
    assert trained == [] and again == first  # resumed: nothing trained twice
    # a new generator's rows make the synthetic variants' results stale: only they run again
    stale = results / "cnn_stargan_seed0.json"
    stale.write_text(json.dumps({**by["stargan"], "generators": ["sha256=old step=1 seed=0"]}))
    rerun = []
    again = run_experiment(data, results, tmp_path / "runs", "disgust", "fear", seeds=(0,),
                           log=rerun.append, epochs=1, max_steps=2)
    assert [m for m in rerun if m.startswith("==")] == [
        "== cnn_stargan_seed0 (stale: made with another generator)"]
    assert [r["generators"] for r in again if r["variant"] == "stargan"] == [made_by]
    table = summary_table(again, "disgust")
    assert table.count("| cnn |") == len(VARIANTS)
    rows = training_rows_table(again).splitlines()
    assert rows[2].startswith("| real |") and rows[3].startswith("| real + synthetic |")
    assert rows[4].startswith("| real, flagged labels left out |")
    assert rows[-1] == f"Synthetic rows from generator `{made_by[0]}`"
