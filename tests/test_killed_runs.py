"""SIGKILL a real `dagster asset materialize` (its whole process group) at a spread of moments
while face_crops, face_index or curated_dataset writes: every table and the published folder
are, each time, either the old version or the new one (readable, complete), never a mix or
nothing; a run to the end afterwards gives what an uninterrupted run gives."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from test_executors import BIN, CURATE, pipeline_env

REPO = Path(__file__).resolve().parents[1]
KILL_AFTER = (3.0, 7.0, 11.0, 15.0)  # seconds: start-up, reading, writing


def launch(env: dict[str, str], args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dagster"), "asset", "materialize", "-m",
                             "fer_data.definitions", *args], cwd=REPO,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def run(env: dict[str, str], args: list[str]) -> None:
    proc = launch(env, args)
    assert proc.wait(timeout=600) == 0


def kill_after(env: dict[str, str], args: list[str], seconds: float) -> None:
    proc = launch(env, args)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_then(env: dict[str, str], args: list[str], seconds: float, look) -> str:
    kill_after(env, args, seconds)
    return look()


def table_digest(path: Path) -> str:
    """The content of a Parquet table (not its bytes) and its metadata (the settings some
    tables record): it must parse, whole."""
    table = pq.read_table(path)
    digest = hashlib.sha256(repr(sorted((table.schema.metadata or {}).items())).encode())
    for column in table.column_names:
        digest.update(repr(table.column(column).to_pylist()).encode())
    return digest.hexdigest()


def folder_digest(folder: Path) -> str:
    """A published folder: complete (its _SUCCESS marker and every split) and its content."""
    assert (folder / "_SUCCESS").exists(), sorted(p.name for p in folder.parent.iterdir())
    return hashlib.sha256(b"".join(
        table_digest(folder / f"{split}.parquet").encode()
        for split in ("train", "val", "test"))).hexdigest()


def config(ops: dict) -> list[str]:
    return ["--config-json", json.dumps({"ops": ops})]


def test_killed_runs_leave_the_old_or_the_new_version(tmp_path):
    env = pipeline_env(tmp_path)
    crops = tmp_path / "storage" / "face_crops" / "jaffe.parquet"
    index = tmp_path / "storage" / "face_index" / "all.parquet"
    curated = tmp_path / "curated" / "fer7"
    ingest = ["--select", "raw_images,face_crops", "--partition", "jaffe"]
    run(env, ingest)
    run(env, ["--select", ",".join(CURATE), *config(
        {"stargan_model": {"config": {"num_iters": 10}},
         "expression_judge": {"config": {"epochs": 1, "min_steps": 20}},
         "synthetic_faces": {"config": {"use_ineligible_generator": True}}})])
    old_crops, old_curated = table_digest(crops), folder_digest(curated)
    old_index = table_digest(index)
    # the same state copied aside, where the new versions are made without interruption
    calm = tmp_path / "uninterrupted"
    for part in ("raw", "storage", "curated", "home"):
        shutil.copytree(tmp_path / part, calm / part, symlinks=True)
    calm_env = pipeline_env(calm)

    # the new versions differ: a wider face margin; the classes re-published without calm
    # rows mapped, and another split seed
    new_crops_args = [*ingest, *config({"face_crops": {"config": {"margin": 0.3}}})]
    new_index_args = ["--select", "face_index",
                      *config({"face_index": {"config": {"include_flips": False}}})]
    new_curated_args = ["--select", "splits,curated_dataset",
                        *config({"splits": {"config": {"seed": 7}}})]
    # one asset at a time (each one's new version depends on the upstream ones' being final)
    seen_crops = {kill_then(env, new_crops_args, s, lambda: table_digest(crops))
                  for s in KILL_AFTER}
    run(env, new_crops_args)
    seen_index = {kill_then(env, new_index_args, s, lambda: table_digest(index))
                  for s in KILL_AFTER}
    run(env, new_index_args)
    seen_curated = {kill_then(env, new_curated_args, s, lambda: folder_digest(curated))
                    for s in KILL_AFTER}
    run(env, new_curated_args)
    new_crops, new_index, new_curated = \
        table_digest(crops), table_digest(index), folder_digest(curated)
    for args in (new_crops_args, new_index_args, new_curated_args):
        run(calm_env, args)
    assert (new_crops, new_index, new_curated) == (
        table_digest(calm / crops.relative_to(tmp_path)),
        table_digest(calm / index.relative_to(tmp_path)),
        folder_digest(calm / "curated" / "fer7"))  # as if nothing had been killed
    assert new_crops != old_crops and new_curated != old_curated and new_index != old_index
    assert seen_crops <= {old_crops, new_crops}, len(seen_crops)
    assert seen_index <= {old_index, new_index}, len(seen_index)
    assert seen_curated <= {old_curated, new_curated}, len(seen_curated)
    # the earlier versions and any staging a killed write left are gone after a full write
    assert [p.name for p in curated.parent.iterdir() if p.name.startswith(".fer7")] == \
        [os.readlink(curated)]


FULL_DISK = r"""
import resource, signal, sys
from fer_data import storage
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so an over-limit write fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    storage.write_folder(sys.argv[1], {"train.parquet": b"n" * 500_000, "card.md": b"new"})
except OSError as exc:
    print(exc)
    sys.exit(3)
"""


def test_a_full_disk_while_publishing_keeps_the_previous_set_and_leaves_nothing(tmp_path):
    """A file-size limit (RLIMIT_FSIZE, as `ulimit -f`) makes the new set's write fail half
    way: a clear error naming the folder, the previous set intact, no staging left."""
    from fer_data import storage

    target = tmp_path / "curated" / "fer7"
    storage.write_folder(target, {"train.parquet": b"old" * 1000, "card.md": b"old"})
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert f"could not write {target}" in proc.stdout and "File too large" in proc.stdout
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in target.parent.iterdir()) == \
        sorted(["fer7", os.readlink(target)])  # the link and its version, nothing else


def test_a_second_make_run_on_the_same_instance_refuses_with_a_message(tmp_path):
    env = {**os.environ, **pipeline_env(tmp_path)}
    command = [sys.executable, "-m", "fer_data.run", "--datasets-only", "--partition", "jaffe",
               "--jobs", "1"]
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    lock = Path(env["DAGSTER_HOME"]) / ".fer_run.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().startswith("pid")):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode != 0
    assert f"another `make run` (pid {first.pid}) is running" in second.stderr
    assert first.wait(timeout=600) == 0, first.stdout.read()[-2000:]
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0  # the lock went with the first run
