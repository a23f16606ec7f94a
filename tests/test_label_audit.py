"""The label audit (fer_data.label_audit, asset label_issues) and what publishing does with it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from fer_data.classifier import FaceTensors
from fer_data.demo.draw import draw_face, random_identity, random_pose, to_gray
from fer_data.label_audit import (
    AuditOptions,
    audit_labels,
    flag_issues,
    fold_of,
    index_rivals,
    precision_recall,
    rival_labels,
)
from fer_data.labels import class_names
from fer_data.publish import PublishOptions, curated_rows, publish_rows


def drawn_faces(people: int, seed: int = 0) -> tuple[FaceTensors, pa.Table]:
    """Every fer7 expression of `people` drawn people, 48 px gray, subject ids per person."""
    classes = class_names("fer7")
    rng = np.random.default_rng(seed)
    images, labels, subjects = [], [], []
    for p in range(people):
        person = random_identity(rng)
        for k, expression in enumerate(classes):
            face = to_gray(draw_face(person, expression, random_pose(rng, 0.5), size=(96, 96),
                                     rng=rng))
            images.append(cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA))
            labels.append(k)
            subjects.append(f"person{p}")
    faces = FaceTensors(torch.from_numpy(np.stack(images)).unsqueeze(1),
                        torch.tensor(labels), classes)
    rows = pa.table({"image_id": [f"face{i:04d}" for i in range(len(labels))],
                     "dataset": ["drawn"] * len(labels), "subject_id": subjects})
    return faces, rows


def test_folds_keep_a_subject_together_and_stratify_the_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    groups = [f"s{i // 5}" if i < 200 else None for i in range(400)]  # half without subject
    fold = fold_of(labels, groups, folds=4, seed=0)
    assert set(fold) == {0, 1, 2, 3}
    for s in {g for g in groups if g}:
        assert len({fold[i] for i, g in enumerate(groups) if g == s}) == 1
    for k in range(4):  # every class in every fold, about a quarter of it
        share = np.bincount(labels[fold == k], minlength=4) / np.bincount(labels, minlength=4)
        assert np.all(np.abs(share - 0.25) < 0.1)
    assert np.array_equal(fold, fold_of(labels, groups, folds=4, seed=0))  # seeded


def test_a_label_the_probabilities_contradict_is_flagged_and_rated_low():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 50)
    probs = np.full((150, 4), 0.02)  # class 3 is absent from the labels: handled
    probs[np.arange(150), labels] = 0.9
    wrong = np.array([3, 60, 120])
    probs[wrong] = [0.02, 0.02, 0.02, 0.02]
    probs[wrong, (labels[wrong] + 1) % 3] = 0.9
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    flagged, quality = flag_issues(labels, probs, "prune_by_noise_rate")
    assert set(np.flatnonzero(flagged)) == set(wrong)
    assert quality[wrong].max() < quality[np.setdiff1d(np.arange(150), wrong)].min()


def test_a_picture_with_two_labels_has_the_side_the_model_doubts_flagged():
    # faces 0 and 1 are one picture labelled 0 and 1; the model slightly prefers 1 but not
    # enough for confident learning to call face 0 wrong. Face 2's copy outside the audit (a
    # cluster member face_index dropped) says 2; the model prefers face 2's own label 0.
    labels = np.array([0, 1, 0] + [0, 1, 2] * 30)
    probs = np.full((len(labels), 3), 0.05)
    probs[np.arange(len(labels)), labels] = 0.9
    probs[0] = probs[1] = [0.45, 0.5, 0.05]
    probs[2] = [0.6, 0.1, 0.3]
    probs /= probs.sum(1, keepdims=True)
    plain, _ = flag_issues(labels, probs, "prune_by_noise_rate")
    assert not plain[:3].any()
    pictures = ["a", "a", "b"] + [f"x{i}" for i in range(90)]
    rivals = rival_labels(pictures, labels, {"b": {2}})
    assert rivals[:3] == [frozenset({1}), frozenset({0}), frozenset({2})]
    flagged, _ = flag_issues(labels, probs, "prune_by_noise_rate", rivals)
    assert flagged.tolist()[:3] == [True, False, False]
    assert not flagged[3:].any()


def test_rivals_come_from_the_label_conflicts_face_index_dropped():
    index = pa.table({
        "image_id": ["k", "d1", "d2", "other"],
        "cluster_id": [7, 7, 7, 9],
        "label": ["fear", "sad", "fear", "happy"],
        "drop_reason": [None, "label_conflict", "duplicate", None],
    })
    classes = class_names("fer7")
    assert index_rivals(index, ["other", "k"], "fer7") == [
        frozenset(), frozenset({classes.index("sad")})]


def test_precision_recall_curve_counts_the_lowest_scores_first():
    scores = np.array([0.1, 0.2, 0.2, 0.5, 0.9])
    truth = np.array([True, False, True, False, True])
    curve = precision_recall(scores, truth)
    assert [p["flagged"] for p in curve] == [1, 3, 4, 5]  # tied scores enter together
    assert curve[0]["precision"] == 1.0 and curve[0]["recall"] == pytest.approx(1 / 3)
    assert curve[1]["precision"] == pytest.approx(2 / 3) and curve[1]["recall"] == \
        pytest.approx(2 / 3)
    assert curve[-1]["recall"] == 1.0


def test_audit_finds_planted_label_flips_out_of_fold():
    """Drawn expressions a small CNN learns; a tenth of the labels changed on purpose. A face
    scored by a model that had seen its own (wrong) label would look right, so recall here
    also shows the probabilities are out of fold."""
    torch.set_num_threads(2)
    faces, rows = drawn_faces(60)
    rng = np.random.default_rng(2)
    truth = faces.labels.numpy()
    given = truth.copy()
    flipped = rng.choice(len(given), len(given) // 10, replace=False)
    given[flipped] = (given[flipped] + rng.integers(1, 7, len(flipped))) % 7
    noisy = FaceTensors(faces.images, torch.from_numpy(given), faces.classes)
    audit = audit_labels(noisy, rows, AuditOptions(folds=3, epochs=1, min_steps=100),
                         log=lambda line: None)
    table = audit.table.to_pandas()
    assert list(table["image_id"]) == rows.column("image_id").to_pylist()
    assert (table.groupby(rows.column("subject_id").to_pylist())["fold"].nunique() == 1).all()
    flagged = table["flagged"].to_numpy()
    planted = given != truth
    recall = (flagged & planted).sum() / planted.sum()
    precision = (flagged & planted).sum() / flagged.sum()
    assert recall >= 0.6 and precision >= 0.35, (recall, precision)
    # the suggestion is mostly the true label, and the flipped faces rate lowest
    suggested = table["suggested_label"].to_numpy()[planted]
    assert np.mean(suggested == np.array(faces.classes)[truth[planted]]) >= 0.45  # chance 1/7
    quality = table["label_quality"].to_numpy()
    assert np.median(quality[planted]) < np.median(quality[~planted])
    assert list(table["label"]) == list(np.array(faces.classes)[given])  # as given


def rows_for_publish(n_train: int = 4) -> tuple[pa.Table, pa.Table, pa.Table]:
    """face_crops-like rows, a splits table and a label audit of the training rows."""
    ids = [f"img{i}" for i in range(n_train + 2)]
    faces = pa.table({
        "image_id": ids, "dataset": ["fer2013"] * len(ids), "source_path": ids,
        "label": ["happy", "sad", "fear", "angry", "happy", "sad"], "subject_id": [None] * 6,
        "face": [b"png"] * 6, "bbox": pa.array([[0, 0, 48, 48]] * 6, pa.list_(pa.float32(), 4)),
        "valence": pa.nulls(6, pa.float32()), "arousal": pa.nulls(6, pa.float32())})
    splits = pa.table({"image_id": ids, "split": ["train"] * n_train + ["val", "test"]})
    audit = pa.table({"image_id": ids[:n_train], "label": ["happy", "sad", "fear", "angry"],
                      "suggested_label": ["happy", "neutral", "fear", "disgust"],
                      "label_quality": pa.array([0.9, 0.1, 0.8, 0.05], pa.float32()),
                      "flagged": [False, True, False, True]})
    return faces, splits, audit


@pytest.mark.parametrize("action", ["keep", "drop", "relabel"])
def test_publishing_adds_label_quality_and_acts_on_flags(action):
    faces, splits, audit = rows_for_publish()
    table, excluded = curated_rows(publish_rows(faces, splits, audit=audit),
                                   PublishOptions(label_audit=action))
    out = table.to_pandas().set_index("image_id")
    assert out.loc["img0", "label_quality"] == pytest.approx(0.9)
    assert pd.isna(out.loc["img4", "label_quality"]) and pd.isna(out.loc["img5", "label_quality"])
    if action == "keep":
        assert len(out) == 6 and out.loc["img1", "label_name"] == "sad"
        assert out["label_flagged"].tolist() == [False, True, False, True, None, None]
    elif action == "drop":
        assert "img1" not in out.index and "img3" not in out.index and len(out) == 4
        assert excluded == {"flagged by the label audit": 2}
    else:
        assert out.loc["img1", "label_name"] == "neutral"
        assert out.loc["img3", "label_name"] == "disgust"
        assert out.loc["img2", "label_name"] == "fear" and len(out) == 6


def test_an_audit_of_another_training_split_is_refused():
    faces, splits, audit = rows_for_publish()
    moved = splits.set_column(1, "split", pa.array(["train", "val", "train", "train", "train",
                                                    "test"]))
    with pytest.raises(ValueError, match="materialize label_issues again"):
        publish_rows(faces, moved, audit=audit)
    table, _ = curated_rows(publish_rows(faces, splits), PublishOptions())  # no audit: nulls
    assert table.column("label_quality").null_count == 6


def test_audited_training_leaves_the_flagged_rows_out(demo_pipeline):
    from fer_data.classifier import load_split

    root, _ = demo_pipeline
    folder = root / "curated" / "fer7"
    train = pd.read_parquet(folder / "train.parquet")
    real = train[~train["is_synthetic"]]
    flagged = int(real["label_flagged"].sum())
    assert 0 < flagged < len(real)  # the short demo audit flags some, not all
    assert len(load_split(folder, "train", synthetic=False, flagged=False)) == \
        len(real) - flagged
    assert len(load_split(folder, "train", synthetic=False)) == len(real)


def test_demo_pipeline_audits_the_training_split_and_publishes_label_quality(demo_pipeline):
    root, _ = demo_pipeline
    audit = pq.read_table(root / "storage" / "label_issues" / "all.parquet").to_pandas()
    published = {s: pd.read_parquet(root / "curated" / "fer7" / f"{s}.parquet")
                 for s in ("train", "val", "test")}
    train = published["train"][~published["train"]["is_synthetic"]]
    assert set(audit["image_id"]) == set(train["image_id"])  # every training face, no other
    quality = train.set_index("image_id")["label_quality"]
    assert np.allclose(quality.loc[audit["image_id"]].to_numpy(), audit["label_quality"])
    assert published["val"]["label_quality"].isna().all()
    assert published["test"]["label_quality"].isna().all()
    card = (root / "curated" / "fer7" / "dataset_card.md").read_text()
    assert f"of {len(audit):,}" in card and "label audit" in card
    # and what de-duplication found, per key, as face_index recorded it
    index = pq.read_table(root / "storage" / "face_index" / "all.parquet")
    pairs = json.loads(index.schema.metadata[b"fer_data_counts.duplicate_pairs"])
    assert sum(pairs.values()) > 0
    for key, n in pairs.items():
        assert f"(`{key}`): {n:,}" in card
