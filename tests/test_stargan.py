"""StarGAN: shapes, resumable training, and that a smoke run on the demo faces learns."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from fer_data.augment import load_training_faces, round_robin_sources
from fer_data.storage import StorageLayout
from stargan.generate import domain_probabilities, load_trained, translate
from stargan.model import Discriminator, Generator, discriminator_depth
from stargan.train import PROFILES, TrainConfig, build_models, load_checkpoint, train


@pytest.mark.parametrize("size", [48, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_discriminator_shapes(size, channels):
    G = Generator(image_size=size, channels=channels, conv_dim=8, c_dim=7, repeat_num=1)
    D = Discriminator(image_size=size, channels=channels, conv_dim=8, c_dim=7)
    x = torch.rand(2, channels, size, size) * 2 - 1
    y = G(x, torch.eye(7)[:2])
    assert y.shape == x.shape and y.abs().max() <= 1
    src, cls = D(y)
    final = size // 2 ** discriminator_depth(size)
    assert src.shape == (2, 1, final, final) and cls.shape == (2, 7)
    assert discriminator_depth(128) == 6 and discriminator_depth(48) == 4


def test_generator_eval_mode_gives_batch_independent_output():
    G = Generator(image_size=48, channels=1, conv_dim=8, c_dim=3, repeat_num=1).eval()
    x = torch.rand(4, 1, 48, 48)
    c = torch.eye(3)[[0, 1, 2, 0]]
    together = G(x, c)
    alone = torch.cat([G(x[i:i + 1], c[i:i + 1]) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)


def tiny_config(**changes) -> TrainConfig:
    base = TrainConfig(g_conv_dim=8, d_conv_dim=8, g_repeat_num=1, c_dim=3, batch_size=4,
                       num_iters=30, num_iters_decay=10, checkpoint_every=10, log_every=5,
                       domains=["a", "b", "c"])
    return replace(base, **changes)


def test_killed_run_resumes_on_the_same_loss_curve(tmp_path):
    images = torch.rand(40, 1, 48, 48) * 2 - 1
    labels = torch.arange(40) % 3
    whole = train(tiny_config(), images, labels, tmp_path / "whole", log=lambda m: None)
    train(tiny_config(), images, labels, tmp_path / "split", log=lambda m: None, stop_after=20)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 20
    messages = []
    resumed = train(tiny_config(), images, labels, tmp_path / "split", log=messages.append)
    assert messages[0] == "resumed from step 20"
    a, b = load_checkpoint(whole), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 30
    assert [h["step"] for h in b["history"]] == [5, 10, 15, 20, 25, 30]
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x.keys() == y.keys()
        assert all(abs(x[k] - y[k]) < 1e-5 for k in x)
        assert all(torch.isfinite(torch.tensor(v)) for v in y.values())
    for key in a["G"]:
        assert torch.allclose(a["G"][key], b["G"][key], atol=1e-5)
    with pytest.raises(ValueError, match="different config"):
        train(tiny_config(batch_size=8), images, labels, tmp_path / "split", log=lambda m: None)


def test_new_training_faces_train_anew_instead_of_resuming(tmp_path):
    images = torch.rand(40, 1, 48, 48) * 2 - 1
    labels = torch.arange(40) % 3
    train(tiny_config(num_iters=10), images, labels, tmp_path, log=lambda m: None)
    done = []
    train(tiny_config(num_iters=10), images.clone(), labels.clone(), tmp_path, log=done.append)
    assert done == ["resumed from step 10"]  # same faces: nothing to train
    changed, messages = labels.roll(1), []
    path = train(tiny_config(num_iters=10), images, changed, tmp_path, log=messages.append)
    assert "training faces changed" in messages[0] and "step 10" in messages[0]
    assert sum(m.startswith("step ") for m in messages) == 2  # logged at 5 and 10: a full run
    assert load_checkpoint(path)["step"] == 10


def test_checkpoint_loads_with_weights_only(tmp_path):
    path = train(tiny_config(num_iters=10), torch.rand(12, 1, 48, 48), torch.arange(12) % 3,
                 tmp_path, log=lambda m: None)
    state = torch.load(path, weights_only=True)
    assert state["config"]["domains"] == ["a", "b", "c"] and state["step"] == 10


@pytest.fixture(scope="module")
def trained_demo(demo_pipeline):
    root, _ = demo_pipeline
    data = load_training_faces(StorageLayout.from_env(storage_dir=str(root / "storage")))
    trained = load_trained(root / "storage" / "stargan_model" / "smoke" / "checkpoint.pt")
    return root, data, trained


@pytest.mark.xfail(reason="since pre-cropped demo faces pass through unchanged (issue 11), the "
                   "600-iteration smoke StarGAN learns less on the demo data and its own-"
                   "discriminator gate passes few sources; issue 13 replaces profile and gate",
                   strict=False)
def test_smoke_training_learns_to_translate_into_the_target(trained_demo):
    _, data, trained = trained_demo
    target = data.classes.index("disgust")
    sources = data.images[data.labels != target]
    wanted = torch.full((len(sources),), target)
    share = (domain_probabilities(trained.D, translate(trained.G, sources, wanted, 7))
             .argmax(1) == target).float().mean().item()
    config = replace(trained.config, device="cpu")
    torch.manual_seed(123)
    untrained = build_models(config).G.eval()
    base = (domain_probabilities(trained.D, translate(untrained, sources, wanted, 7))
            .argmax(1) == target).float().mean().item()
    assert share > 3 / 7, share  # chance is 1/7
    assert share > base + 0.2, (share, base)
    assert trained.step == PROFILES["smoke"].num_iters


@pytest.mark.xfail(reason="since pre-cropped demo faces pass through unchanged (issue 11), the "
                   "600-iteration smoke StarGAN learns less on the demo data and its own-"
                   "discriminator gate passes few sources; issue 13 replaces profile and gate",
                   strict=False)
def test_synthetic_faces_balance_training_and_trace_provenance(trained_demo):
    root, data, trained = trained_demo
    synthetic = pq.read_table(root / "storage" / "synthetic_faces" / "all.parquet").to_pandas()
    assert len(synthetic) > 0
    assert (synthetic["label"] == "disgust").all() and synthetic["is_synthetic"].all()
    assert (synthetic["split"] == "train").all()
    assert set(synthetic["source_image_id"]) <= set(data.rows["image_id"].to_pylist())
    assert synthetic["generator"].str.match(r"sha256=[0-9a-f]{64} step=600 seed=0").all()
    assert (synthetic["target_probability"] >= 0.5).all()
    sources = data.rows.to_pandas().set_index("image_id").loc[synthetic["source_image_id"]]
    assert (sources["label"] != "disgust").all()
    assert sources["label"].nunique() >= 4  # drawn round-robin over classes

    curated = {s: pd.read_parquet(root / "curated" / "fer7" / f"{s}.parquet")
               for s in ("train", "val", "test")}
    assert not curated["val"]["is_synthetic"].any() and not curated["test"]["is_synthetic"].any()
    train_counts = curated["train"]["label_name"].value_counts()
    real = curated["train"][~curated["train"]["is_synthetic"]]["label_name"].value_counts()
    assert real["disgust"] < real["fear"]
    assert train_counts["disgust"] == train_counts["fear"]  # topped up to the fear count
    rejects = pq.read_table(root / "storage" / "rejects" / "synthetic_faces" / "all.parquet")
    assert set(rejects.column("reason").to_pylist()) <= {
        "low_target_probability", "copy_of_source", "memorized", "not_needed"}
    grid = root / "storage" / "stargan_model" / "smoke" / "translation_grid.png"
    assert grid.stat().st_size > 1000


def test_round_robin_spreads_over_classes_and_subjects():
    import pyarrow as pa

    rows = pa.table({"image_id": [f"i{k}" for k in range(12)],
                     "label": ["happy"] * 6 + ["sad"] * 4 + ["disgust"] * 2,
                     "subject_id": ["a", "a", "a", "a", "b", "c", "d", "d", "d", "e", "f", "f"]})
    order = round_robin_sources(rows, "disgust", seed=0)
    labels = [rows["label"][i].as_py() for i in order]
    subjects = [rows["subject_id"][i].as_py() for i in order]
    assert len(order) == 10 and "disgust" not in labels
    assert labels[:6] == ["happy", "sad"] * 3
    assert len(set(subjects[:4])) == 4  # no identity twice before others had a turn
