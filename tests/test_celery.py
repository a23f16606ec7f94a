"""FER_EXECUTOR=celery on a real Redis broker with real Celery workers on loopback: steps run in
the workers, the StarGAN step on the `gpu` queue, the output equals the multiprocess
executor's, and a queue without a worker fails the run with a message instead of a hang."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance
from test_executors import BIN, CURATE, INGEST, pipeline_env

from conftest import free_port

pytest.importorskip("dagster_celery", reason="needs the cluster extras: pip install "
                    "'fer-data[cluster]'")
redis = pytest.importorskip("redis", reason="needs the cluster extras (the redis client)")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server not found (Debian: apt-get install redis-server)",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def broker(tmp_path):
    """A throw-away redis-server on a free loopback port, no persistence."""
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, start_new_session=True)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    server.kill()
    server.wait()


class Workers:
    """Real `python -m fer_data.worker` processes, each in its own process group."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.procs = env, logs, {}

    def start(self, name: str, queues: str, app) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "a")
        env = {**os.environ, **self.env}
        proc = subprocess.Popen([sys.executable, "-m", "fer_data.worker", "--queues", queues,
                                 "--name", name], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[f"{name}@{socket.gethostname()}"], timeout=1):
            assert proc.poll() is None and time.monotonic() < deadline, \
                (self.logs / f"{name}.log").read_text()[-3000:]
        return proc

    def pids(self, name: str) -> set[int]:
        """Every process of the worker's group (the CLI, celery, its pool children)."""
        out = subprocess.run(["ps", "-o", "pid=", "-g", str(self.procs[name].pid)],
                             capture_output=True, text=True).stdout
        return {int(p) for p in out.split()}

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()  # reap the group leader; init reaps the rest
        deadline = time.monotonic() + 30
        while self._alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)

    @staticmethod
    def _alive(group: int) -> bool:
        out = subprocess.run(["ps", "-o", "stat=", "-g", str(group)], capture_output=True,
                             text=True).stdout.split()
        return any(not state.startswith("Z") for state in out)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def step_pids(instance: DagsterInstance, run_id: str) -> dict[str, int]:
    return {e.step_key: e.dagster_event.pid
            for e in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)}


def curated_rows(root: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(root / "curated" / "fer7" / f"{s}.parquet",
                              columns=["image_id", "label", "split"])
              for s in ("train", "val", "test")]
    return pd.concat(frames).sort_values("image_id").reset_index(drop=True)


def launch(env: dict[str, str], args: list[str]) -> subprocess.Popen:
    """`dagster asset materialize` as CI runs it, output to a pipe."""
    return subprocess.Popen([str(BIN / "dagster"), "asset", "materialize", "-m",
                             "fer_data.definitions", *args], cwd=REPO,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> subprocess.Popen:
    proc.output = proc.communicate(timeout=timeout)[0]
    return proc


def curate_args(stargan_iters: int, **stargan) -> list[str]:
    # a short judge: these tests are about where steps run, the judge only has to exist
    ops = {"stargan_model": {"config": {"num_iters": stargan_iters, **stargan}},
           "expression_judge": {"config": {"epochs": 1, "min_steps": 20}}}
    return ["--select", ",".join(CURATE), "--config-json", json.dumps({"ops": ops})]


INGEST_JAFFE = ["--select", ",".join(INGEST), "--partition", "jaffe"]


def materialize(env: dict[str, str], stargan_iters: int = 10) -> list[subprocess.Popen]:
    """The demo JAFFE partition, then the rest with a short StarGAN; the finished CLI
    processes (the second only if the first succeeded)."""
    done = [finish(launch(env, INGEST_JAFFE))]
    if done[0].returncode == 0:
        done.append(finish(launch(env, curate_args(stargan_iters))))
    return done


def test_celery_workers_run_the_steps_gpu_step_on_its_queue_same_output(tmp_path, broker):
    from dagster_celery.make_app import make_app

    reference = pipeline_env(tmp_path / "multiprocess", FER_EXECUTOR="multiprocess")
    assert all(p.returncode == 0 for p in materialize(reference))

    env = pipeline_env(tmp_path / "celery", FER_EXECUTOR="celery", FER_CELERY_BROKER=broker)
    app = make_app({"broker": broker, "backend": broker[:-1] + "1", "include": [],
                    "config_source": {}})
    workers = Workers(env, tmp_path)
    try:
        workers.start("cpu", "dagster", app)
        workers.start("gpu", "gpu", app)
        runs = materialize(env)
        assert all(p.returncode == 0 for p in runs), runs[-1].output[-3000:]
        worker_pids = {n: workers.pids(n) for n in ("cpu", "gpu")}
    finally:
        workers.stop_all()
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        steps = {}
        for run in instance.get_runs():
            steps.update(step_pids(instance, run.run_id))
    assert sorted(steps) == sorted(INGEST + CURATE)
    assert not {p.pid for p in runs} & set(steps.values())  # none in the launching process
    assert steps["stargan_model"] in worker_pids["gpu"]  # through the gpu queue
    assert {p for s, p in steps.items() if s != "stargan_model"} <= worker_pids["cpu"]
    assert curated_rows(tmp_path / "celery").equals(curated_rows(tmp_path / "multiprocess"))


def test_a_queue_without_a_worker_fails_the_run_with_a_message(tmp_path, broker):
    from dagster_celery.make_app import make_app

    env = pipeline_env(tmp_path, FER_EXECUTOR="celery", FER_CELERY_BROKER=broker)
    app = make_app({"broker": broker, "backend": broker[:-1] + "1", "include": [],
                    "config_source": {}})
    workers = Workers(env, tmp_path)
    try:
        workers.start("cpu", "dagster", app)
        started = time.monotonic()
        runs = materialize(env)  # no worker on the gpu queue
        assert runs[-1].returncode != 0 and time.monotonic() - started < 300
        assert 'no Celery worker listens on queue "gpu"' in runs[-1].output
    finally:
        workers.stop_all()


def test_a_worker_killed_mid_step_fails_the_run_and_the_rerun_resumes(tmp_path, broker):
    """SIGKILL the gpu worker's process group once StarGAN wrote its first checkpoint: the run
    fails within a bounded time, naming the worker and the step; a new worker and a second run
    finish it, StarGAN resuming from that checkpoint instead of step 0."""
    from dagster_celery.make_app import make_app

    env = pipeline_env(tmp_path, FER_EXECUTOR="celery", FER_CELERY_BROKER=broker)
    app = make_app({"broker": broker, "backend": broker[:-1] + "1", "include": [],
                    "config_source": {}})
    model = tmp_path / "storage" / "stargan_model"
    workers = Workers(env, tmp_path)
    try:
        workers.start("cpu", "dagster", app)
        workers.start("gpu", "gpu", app)
        assert finish(launch(env, INGEST_JAFFE)).returncode == 0
        args = curate_args(60, checkpoint_every=20)
        run = launch(env, args)
        deadline = time.monotonic() + 400
        while not any(model.glob("*/checkpoint.pt")):
            assert run.poll() is None and time.monotonic() < deadline, run.stdout.read()[-3000:]
            time.sleep(0.2)
        workers.kill("gpu")
        killed = time.monotonic()
        finish(run, timeout=120)
        assert run.returncode != 0 and time.monotonic() - killed < 60
        assert "stopped answering while it ran step" in run.output
        assert '"stargan_model"' in run.output

        workers.start("gpu2", "gpu", app)
        rerun = finish(launch(env, args))
        assert rerun.returncode == 0, rerun.output[-3000:]
    finally:
        workers.stop_all()
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        messages = [e.user_message for r in instance.get_runs()
                    for e in instance.all_logs(r.run_id)]
    resumed = [m for m in messages if m.startswith("resumed from step")]
    assert resumed and int(resumed[0].split()[-1]) >= 20
    assert len(curated_rows(tmp_path)) > 0
