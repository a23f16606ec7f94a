"""The built-in demo data: every format present, deterministic, and faces that detectors find."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch
from facenet_pytorch import MTCNN
from PIL import Image

from fer_data.datasets import DATASETS, write_demo
from fer_data.demo import DemoSpec
from fer_data.frames import FrameOptions, decode_frames
from fer_data.images import decode_png
from fer_data.ingest import ingest_dataset
from fer_data.labels import FER7

DETECTOR_DATASETS = ("ckplus", "kdef", "jaffe", "ravdess")


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo_tables(demo_raw):
    return {d: ingest_dataset(demo_raw, d) for d in DATASETS}


def test_every_dataset_format_is_written_and_read_back(demo_tables):
    for dataset, result in demo_tables.items():
        assert result.records.num_rows > 0, dataset
        assert result.accounted and result.unused_files == [], dataset
        assert result.reader is not None
    assert demo_tables["fer2013"].reader == "fer2013_csv"
    assert demo_tables["ckplus"].reader == "ckplus_original"
    for dataset in ("fer2013", "face_expression", "kdef", "jaffe"):
        assert set(demo_tables[dataset].labels()) == set(FER7), dataset


def test_disgust_is_rare_in_the_fer_style_sets(demo_tables):
    labels = demo_tables["fer2013"].labels()
    assert labels["disgust"] * 4 < min(v for k, v in labels.items() if k != "disgust")


def test_several_identities_per_subject_dataset(demo_tables):
    for dataset in DETECTOR_DATASETS:
        subjects = set(demo_tables[dataset].records.column("subject_id").to_pylist())
        assert len(subjects) >= 2, dataset


def test_demo_is_deterministic_from_its_seed(demo_raw, tmp_path):
    subset = ("fer2013", "jaffe", "ravdess")
    write_demo(tmp_path, DemoSpec(seed=0, datasets=subset))
    for dataset in subset:
        assert digest(tmp_path / dataset) == digest(demo_raw / dataset), dataset
    write_demo(tmp_path / "other", DemoSpec(seed=1, datasets=("jaffe",)))
    assert digest(tmp_path / "other" / "jaffe") != digest(demo_raw / "jaffe")


def detector_images(demo_raw, demo_tables):
    """RGB arrays of every demo image a detector is meant to run on."""
    images = {}
    for dataset in ("ckplus", "kdef", "jaffe"):
        pixels = [decode_png(b) for b in demo_tables[dataset].records.column("image").to_pylist()]
        images[dataset] = [p if p.ndim == 3 else np.stack([p] * 3, -1) for p in pixels]
    clips = sorted((demo_raw / "ravdess").rglob("*.mp4"))
    frames = [f for clip in clips for f in decode_frames(clip, FrameOptions(fps=2))]
    images["ravdess"] = [np.stack([f] * 3, -1) for f in frames]
    return images


def test_haar_and_mtcnn_find_at_least_90_percent_of_demo_faces(demo_raw, demo_tables):
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    mtcnn = MTCNN(keep_all=True, device=torch.device("cpu"))
    for dataset, images in detector_images(demo_raw, demo_tables).items():
        haar = sum(len(cascade.detectMultiScale(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), 1.1, 3,
                                                minSize=(24, 24))) > 0 for im in images)
        found = sum(mtcnn.detect(Image.fromarray(im))[0] is not None for im in images)
        assert haar >= 0.9 * len(images), (dataset, "haar", haar, len(images))
        assert found >= 0.9 * len(images), (dataset, "mtcnn", found, len(images))
