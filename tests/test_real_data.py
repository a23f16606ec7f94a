"""Against the real samples in ../shared/datasets (skipped where that folder is absent)."""

from __future__ import annotations

from itertools import combinations

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from fer_data.defs.curate import curated_dataset, face_index, splits
from fer_data.defs.faces import FaceDetector, face_crops
from fer_data.defs.ingest import raw_images
from fer_data.defs.resources import StorageResource
from fer_data.ingest import ingest_dataset

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


def test_real_fer2013_and_ckplus48_publish_without_leaks(real_raw, tmp_path):
    storage = tmp_path / "storage"
    resources = {"storage_resource": StorageResource(raw_dir=str(real_raw),
                                                     storage_dir=str(storage),
                                                     curated_dir=str(tmp_path / "curated")),
                 "face_detector": FaceDetector()}
    instance = DagsterInstance.ephemeral()
    fast = {"ops": {"face_crops": {"config": {"quality_detector": "off"}}}}
    for dataset in ("fer2013", "ckplus"):
        assert materialize([raw_images, face_crops], partition_key=dataset, resources=resources,
                           instance=instance, run_config=fast).success
    result = materialize([face_index, splits, curated_dataset], resources=resources,
                         instance=instance)
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    meta = {e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}
    assert meta["face_index"]["exact_duplicate_groups"].value == 1116
    assert meta["face_index"]["exact_groups_with_label_conflicts"].value == 43
    folder = tmp_path / "curated" / "fer7"
    frames = {s: pd.read_parquet(folder / f"{s}.parquet", columns=["image_id", "subject_id",
                                                                   "source_dataset"])
              for s in ("train", "val", "test")}
    for a, b in combinations(frames.values(), 2):
        assert not set(a["image_id"]) & set(b["image_id"])
        assert not set(a["subject_id"].dropna()) & set(b["subject_id"].dropna())
    assert {"fer2013", "ckplus"} <= set(frames["train"]["source_dataset"])
