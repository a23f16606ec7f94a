"""Against the real samples in ../shared/datasets (skipped where that folder is absent)."""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance
from PIL import Image

from fer_data.audit import cross_split_twins, published_rows
from fer_data.defs.resources import StorageResource
from fer_data.demo.repackage import RepackageSpec, repackage
from fer_data.detectors import eyes_found
from fer_data.ingest import ingest_dataset
from fer_data.run import materialize_assets

from conftest import face_check_rates

FER_TRAIN = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965,
             "sad": 4830, "surprise": 3171}
FER_TEST = {"angry": 958, "disgust": 111, "fear": 1024, "happy": 1774, "neutral": 1233,
            "sad": 1247, "surprise": 831}


@pytest.fixture
def real_raw(shared, tmp_path):
    """raw/ with the real FER2013 image export and CK+48, linked, not copied."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "fer2013").symlink_to(shared / "fer2013_images")
    (raw / "ckplus").mkdir()
    (raw / "ckplus" / "CK+48").symlink_to(shared / "ckplus48")
    return raw


def test_fer2013_folders_ingest_with_the_documented_counts(real_raw):
    result = ingest_dataset(real_raw, "fer2013")
    assert result.accounted and result.rejects.num_rows == 0
    frame = result.records.select(["label", "source_path", "official_split"]).to_pandas()
    folder = frame["source_path"].str.split("/").str[0]
    assert frame[folder == "train"]["label"].value_counts().to_dict() == FER_TRAIN
    assert frame[folder == "test"]["label"].value_counts().to_dict() == FER_TEST
    assert frame["official_split"].value_counts().to_dict() == {"train": 28709, "val": 3589,
                                                               "test": 3589}


def test_fer2013_csv_sample(shared, tmp_path):
    (tmp_path / "fer2013").mkdir()
    (tmp_path / "fer2013" / "fer2013.csv").symlink_to(shared / "fer2013_csv" / "fer2013.csv")
    result = ingest_dataset(tmp_path, "fer2013")
    assert result.records.column("label").to_pylist() == ["angry", "angry", "fear", "sad"]
    assert result.records.column("width").to_pylist() == [48] * 4


def test_ckplus48_subjects_and_classes(real_raw):
    result = ingest_dataset(real_raw, "ckplus")
    assert result.reader == "ckplus48" and result.records.num_rows == 981
    assert result.labels()["contempt"] == 54
    assert len(set(result.records.column("subject_id").to_pylist())) > 100


@pytest.fixture
def real_with_repackage(real_raw, shared, tmp_path):
    """real_raw plus a Kaggle-style repackage of part of it (raw/face_expression) and the
    manifest of every planted copy."""
    manifest = repackage(shared / "fer2013_images", shared / "ckplus48", tmp_path / "made",
                         RepackageSpec(fer_count=3000, ckplus_count=120, seed=1))
    (real_raw / "face_expression").symlink_to(tmp_path / "made" / "face_expression")
    origins = {"fer2013": "", "ckplus": "CK+48/"}
    planted = pd.read_csv(manifest)
    planted["origin_path"] = planted["origin_dataset"].map(origins) + planted["origin_path"]
    return real_raw, planted


def run_pipeline(raw, root):
    storage = StorageResource(raw_dir=str(raw), storage_dir=str(root / "storage"),
                              curated_dir=str(root / "curated"))
    instance = DagsterInstance.ephemeral()
    for dataset in sorted(p.name for p in raw.iterdir()):
        assert materialize_assets(["raw_images", "face_crops"], dataset, storage=storage,
                                  instance=instance).success
    result = materialize_assets(["face_index", "splits", "curated_dataset"], storage=storage,
                                instance=instance)
    assert result.success
    return result


def test_real_fer2013_ckplus48_and_a_repackage_publish_without_leaks(real_with_repackage,
                                                                    tmp_path):
    raw, planted = real_with_repackage
    result = run_pipeline(raw, tmp_path)
    assert all(c.passed for c in result.get_asset_check_evaluations())
    meta = {e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}

    # exact duplicates = groups of files with the same decoded pixels, counted from the files
    # themselves; every group of byte-identical files is one of them
    files = [Path(d) / f for d, _, names in os.walk(raw, followlinks=True) for f in names
             if f.endswith((".jpg", ".png"))]
    by_bytes = Counter(hashlib.sha1(p.read_bytes()).hexdigest() for p in files)
    by_pixels = Counter(hashlib.sha1(np.asarray(Image.open(p).convert("L")).tobytes())
                        .hexdigest() for p in files)
    exact = meta["face_index"]["exact_duplicate_groups"].value
    assert exact == sum(1 for n in by_pixels.values() if n > 1)
    assert exact >= sum(1 for n in by_bytes.values() if n > 1) > 1200

    # every planted copy sits in its origin's cluster
    index = pq.read_table(tmp_path / "storage" / "face_index" / "all.parquet",
                          columns=["dataset", "source_path", "cluster_id"]).to_pandas()
    cluster = dict(zip(zip(index["dataset"], index["source_path"], strict=True),
                       index["cluster_id"], strict=True))
    copies = planted["copy"].map(lambda c: cluster[("face_expression", c)])
    origins = [cluster[(d, p)] for d, p in zip(planted["origin_dataset"],
                                               planted["origin_path"], strict=True)]
    assert (copies == origins).all(), planted[copies != origins].head()

    # the published rows, traced to their original files and hashed by imagehash
    folder = tmp_path / "curated" / "fer7"
    rows = published_rows(folder, raw)
    assert rows["source_path"].notna().all()
    twins = cross_split_twins(list(rows["file"]), rows["split"].to_numpy())
    assert twins[2] == 0 and twins[4] <= 50, twins

    # already-cropped 48x48 gray sources are published pixel for pixel
    images = pd.concat([pd.read_parquet(folder / f"{s}.parquet", columns=["image_id", "image"])
                        for s in ("train", "val", "test")]).set_index("image_id")["image"]
    for row in rows.iloc[::97].itertuples():
        published = np.asarray(Image.open(io.BytesIO(images[row.image_id]["bytes"])))
        assert np.array_equal(published, np.asarray(Image.open(row.file).convert("L"))), row
    card = (folder / "dataset_card.md").read_text()
    assert "- **face_expression**: " in card and "dropped as duplicates of fer2013" in card


def test_fer2013_export_exact_duplicates_match_its_readme(real_raw, tmp_path):
    """The image export's documented quirks: 1,176 byte-identical groups, 42 of them filed
    under several classes."""
    (real_raw / "ckplus").rename(tmp_path / "unused")
    result = run_pipeline(real_raw, tmp_path)
    meta = {e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}
    assert meta["face_index"]["exact_duplicate_groups"].value == 1176
    assert meta["face_index"]["exact_groups_with_label_conflicts"].value == 42


def test_synthetic_face_gate_finds_real_faces_and_no_scrambled_ones(shared):
    """The gate's face check on 1,000 real FER2013 training faces (every 25th file): it finds
    most (measured 0.75 on 3,000 crops) and none of the same pixels as noise or shuffled
    8 px blocks, and few upside down."""
    files = sorted((shared / "fer2013_images" / "train").glob("*/*.*"))[::25][:1000]
    faces = np.stack([np.asarray(Image.open(f).convert("L").resize((48, 48))) for f in files])
    rates = face_check_rates(faces)
    assert rates["faces"] > 0.65, rates
    assert rates["noise"] == 0 and rates["shuffled"] < 0.02, rates
    assert rates["upside_down"] < rates["faces"] / 3, rates
    # the eye check of the synthetic-face report: strict on real faces too, blind to noise
    assert 0.15 < eyes_found(faces).mean() < 0.5
    assert not eyes_found(np.random.default_rng(0).integers(0, 256, faces.shape, np.uint8)).any()
