"""The executor is picked by FER_EXECUTOR: multiprocess by default, Kubernetes on a cluster.

The Kubernetes test runs Dagster's real k8s_job_executor against an API server on loopback that
implements the three Job calls the executor makes and runs each Job's container command as a
local process, as a kubelet would run the pod. So the executor builds, submits, polls and
completes real Job manifests, and the test reads what a cluster would have been asked for.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    define_asset_job,
    execute_job,
    reconstructable,
)

from fer_data.datasets import write_demo
from fer_data.defs.executor import default_max_concurrent, executor_from_env
from fer_data.demo import DemoSpec

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def pipeline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    raw = tmp_path / "raw"
    if not raw.exists():
        write_demo(raw, DemoSpec(datasets=("jaffe",)))
    (tmp_path / "home").mkdir(exist_ok=True)
    return {"DAGSTER_HOME": str(tmp_path / "home"), "FER_RAW_DIR": str(raw),
            "FER_STORAGE_DIR": str(tmp_path / "storage"),
            "FER_CURATED_DIR": str(tmp_path / "curated"), **extra}


def pids(instance: DagsterInstance, event_type: DagsterEventType, text: str = "") -> list[int]:
    """Process ids that logged events of this type (and text) in the latest run."""
    run = instance.get_runs(limit=1)[0]
    return [e.dagster_event.pid for e in instance.all_logs(run.run_id, of_type=event_type)
            if text in e.user_message]


def test_executor_choice(monkeypatch):
    monkeypatch.delenv("FER_EXECUTOR", raising=False)
    monkeypatch.setenv("FER_MAX_CONCURRENT", "3")
    default = executor_from_env()
    assert default.name == "multiprocess"
    assert default.config_schema.as_field().config_type.fields["max_concurrent"].default_value == 3
    for name, expected in [("in_process", "in_process"), ("k8s", "k8s"), ("celery", "celery"),
                           ("celery_k8s", "celery-k8s")]:
        monkeypatch.setenv("FER_EXECUTOR", name)
        assert executor_from_env().name == expected
    monkeypatch.setenv("FER_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="not one of multiprocess, in_process, celery, k8s"):
        executor_from_env()
    monkeypatch.setenv("FER_MAX_CONCURRENT", "0")
    with pytest.raises(ValueError, match="positive integer"):
        default_max_concurrent()


def test_cli_materialize_runs_each_step_in_a_child_process(tmp_path):
    """`dagster asset materialize` (as in CI) uses the default multiprocess executor."""
    env = pipeline_env(tmp_path, FER_MAX_CONCURRENT="2")
    env.pop("FER_EXECUTOR", None)
    done = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "fer_data.definitions",
         "--select", "raw_images,face_crops", "--partition", "jaffe"],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        parent = set(pids(instance, DagsterEventType.ENGINE_EVENT,
                          "multiprocess executor: parent process"))
        steps = pids(instance, DagsterEventType.STEP_START)
        assert len(parent) == 1 and len(steps) == 2
        assert len(set(steps)) == 2 and not parent & set(steps)
        assert instance.get_latest_materialization_event(AssetKey("face_crops")) is not None


class FakeKubernetes(ThreadingHTTPServer):
    """Create, read the status of, and delete batch/v1 Jobs; each Job runs its container's
    command with the container's environment only, like a pod would."""

    JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+)(/status)?)?$")

    def __init__(self, logs: Path):
        super().__init__(("127.0.0.1", 0), KubernetesHandler)
        self.logs = logs
        self.jobs: dict[str, dict] = {}
        self.pods: dict[str, subprocess.Popen] = {}
        self.unexpected: list[str] = []

    def create(self, namespace: str, job: dict) -> dict:
        name = job["metadata"]["name"]
        job["metadata"]["namespace"] = namespace
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        # what the image would provide: the Python environment, and this module (the jobs)
        env.update(PATH=f"{BIN}:{os.environ['PATH']}", PYTHONPATH=str(Path(__file__).parent))
        command = container.get("command", []) + container.get("args", [])
        with open(self.logs / f"{name}.log", "w") as log:
            self.pods[name] = subprocess.Popen(command, env=env, cwd=REPO, stdout=log,
                                               stderr=subprocess.STDOUT)
        self.jobs[name] = job
        return job

    def status(self, name: str) -> dict:
        code = self.pods[name].poll()
        state = {"active": 1} if code is None else {"succeeded": 1} if code == 0 else {"failed": 1}
        return {**self.jobs[name], "status": state}

    def delete(self, name: str) -> dict:
        self.pods[name].kill()
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}


class KubernetesHandler(BaseHTTPRequestHandler):
    server: FakeKubernetes

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        match = FakeKubernetes.JOBS.match(self.path.split("?")[0])
        if match and method == "POST" and not match[2]:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            return self._reply(201, self.server.create(match[1], body))
        if match and match[2] in self.server.jobs:
            if method == "GET":
                return self._reply(200, self.server.status(match[2]))
            if method == "DELETE":
                return self._reply(200, self.server.delete(match[2]))
        self.server.unexpected.append(f"{method} {self.path}")
        self._reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": "NotFound", "code": 404})

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_DELETE(self):
        self._route("DELETE")

    def log_message(self, *args):
        pass


INGEST = ["raw_images", "face_crops"]
CURATE = ["face_index", "splits", "expression_judge", "stargan_model", "synthetic_faces",
          "curated_dataset"]


def k8s_test_job(name: str):
    """A job over the code location's assets with the FER_EXECUTOR executor, rebuilt by name in
    each step's process."""
    from fer_data.definitions import defs as load_defs

    job = define_asset_job(name, selection=INGEST if name == "ingest" else CURATE,
                           executor_def=executor_from_env())
    return Definitions.merge(load_defs(), Definitions(jobs=[job])).resolve_job_def(name)


def ingest_job():
    return k8s_test_job("ingest")


def curate_job():
    return k8s_test_job("curate")


def test_k8s_executor_runs_every_step_as_a_kubernetes_job(tmp_path, monkeypatch):
    pytest.importorskip("dagster_k8s", reason="needs the cluster extras: pip install "
                        "'fer-data[cluster]'")
    env = pipeline_env(tmp_path, FER_EXECUTOR="k8s")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    logs = tmp_path / "pods"
    logs.mkdir()
    server = FakeKubernetes(logs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "users": [{"name": "test", "user": {}}]}))
    # The instance of a Kubernetes deployment launches runs with the K8sRunLauncher (the Helm
    # chart writes this); the executor takes its cluster, namespace and image settings from it.
    (tmp_path / "home" / "dagster.yaml").write_text(json.dumps({"run_launcher": {
        "module": "dagster_k8s", "class": "K8sRunLauncher", "config": {
            "load_incluster_config": False, "kubeconfig_file": str(kubeconfig),
            "job_namespace": "fer", "job_image": "fer-data:test",
            "dagster_home": env["DAGSTER_HOME"], "instance_config_map": "fer-data-instance",
            "service_account_name": "fer-data",
            "env_vars": [f"{k}={v}" for k, v in env.items()]}}}))
    execution = {"config": {"max_concurrent": 2}}
    try:
        with DagsterInstance.get() as instance:
            ingest = execute_job(reconstructable(ingest_job), instance,
                                 tags={"dagster/partition": "jaffe"},
                                 run_config={"execution": execution})
            assert ingest.success, sorted(p.name for p in logs.iterdir())
            curate = execute_job(
                reconstructable(curate_job), instance,
                run_config={"execution": execution,
                            "ops": {"stargan_model": {"config": {"num_iters": 10}}}})
            assert curate.success, sorted(p.name for p in logs.iterdir())
    finally:
        server.shutdown()
    assert server.unexpected == []
    # one Job per step, all in the configured namespace, each running `dagster api execute_step`
    steps = {job["metadata"]["labels"]["dagster/op"]: job for job in server.jobs.values()}
    assert sorted(steps) == sorted(INGEST + CURATE)
    assert all(j["metadata"]["namespace"] == "fer" for j in steps.values())
    pod = {name: job["spec"]["template"]["spec"] for name, job in steps.items()}
    assert all(p["containers"][0]["image"] == "fer-data:test" for p in pod.values())
    assert all(p["containers"][0]["args"][:3] == ["dagster", "api", "execute_step"]
               for p in pod.values())
    # only the StarGAN step asks for a GPU (so only GPU nodes take it) and tolerates their taint
    gpu = {name for name, p in pod.items()
           if (p["containers"][0].get("resources") or {}).get("limits", {}).get("nvidia.com/gpu")}
    assert gpu == {"stargan_model"}
    assert pod["stargan_model"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert (tmp_path / "curated" / "fer7" / "_SUCCESS").exists()
