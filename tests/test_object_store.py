"""Storage and curated roots on an object store: the ingest -> publish path with s3:// roots,
against a real S3-compatible server (moto's server mode) started on loopback by the test."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow.parquet as pq
import pytest

from fer_data.datasets import write_demo
from fer_data.demo import DemoSpec

pytest.importorskip("s3fs")
pytest.importorskip("moto")


@pytest.fixture
def s3_server(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            if time.time() > deadline:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.3)
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url}.items():
        monkeypatch.setenv(name, value)
    import boto3

    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="fer")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ingest_to_publish_with_s3_roots(s3_server, tmp_path):
    import s3fs
    from dagster import DagsterInstance, materialize

    from fer_data.defs.dedup import face_index
    from fer_data.defs.faces import face_crops
    from fer_data.defs.ingest import raw_images
    from fer_data.defs.publish import curated_dataset
    from fer_data.defs.resources import FaceDetector, PipelineSettings, StorageResource
    from fer_data.defs.splits import splits

    write_demo(tmp_path / "raw", DemoSpec(datasets=("jaffe", "fer2013")))
    resources = {"storage_resource": StorageResource(raw_dir=str(tmp_path / "raw"),
                                                     storage_dir="s3://fer/storage",
                                                     curated_dir="s3://fer/curated"),
                 "face_detector": FaceDetector(), "settings": PipelineSettings()}
    instance = DagsterInstance.ephemeral()
    for dataset in ("jaffe", "fer2013"):
        assert materialize([raw_images, face_crops], partition_key=dataset, resources=resources,
                           instance=instance).success
    assert materialize([face_index, splits, curated_dataset], resources=resources,
                       instance=instance).success

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    assert fs.exists("fer/storage/raw_images/jaffe.parquet")
    assert fs.exists("fer/storage/face_index/all.parquet")
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls("fer/curated/fer7")) == [
        "_SUCCESS", "class_balance.png", "dataset_card.md", "samples.png", "test.parquet",
        "train.parquet", "val.parquet"]
    train = pq.read_table(io.BytesIO(fs.cat("fer/curated/fer7/train.parquet")))
    assert train.num_rows > 0
    assert set(train.column("source_dataset").to_pylist()) == {"jaffe", "fer2013"}
    assert not list((tmp_path).glob("**/*.parquet"))  # nothing landed on the local disk
