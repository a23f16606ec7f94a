"""deploy/dagster.postgres.yaml against a real PostgreSQL server started on loopback (Debian's
postgresql package; skipped where absent, installed by .ci/run)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from fer_data.datasets import write_demo
from fer_data.demo import DemoSpec

REPO = Path(__file__).resolve().parents[1]
BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = pytest.mark.skipif(not BIN, reason="PostgreSQL server not installed (Debian: apt "
                                "install postgresql); .ci/run installs it")


def as_postgres(args: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture
def postgres():
    folder = Path(tempfile.mkdtemp(prefix="fer-pg-"))
    folder.chmod(0o777)
    data = folder / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(BIN[-1])
    subprocess.run(as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                                "--auth=trust"]), check=True, capture_output=True)
    subprocess.run(as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l",
                                str(folder / "log"), "-w", "-o",
                                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
                                "start"]), check=True, capture_output=True)
    try:
        subprocess.run(as_postgres([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p",
                                    str(port), "-U", "postgres", "dagster"]), check=True)
        yield port
    finally:
        subprocess.run(as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                    "stop"]), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_pipeline_runs_are_stored_in_postgres(postgres, tmp_path, monkeypatch):
    pytest.importorskip("dagster_postgres")
    import psycopg2
    from dagster import AssetKey, DagsterInstance, materialize

    from fer_data.defs.ingest import raw_images
    from fer_data.defs.resources import StorageResource

    for name, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_USER": "postgres",
                        "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "dagster",
                        "DAGSTER_PG_PORT": str(postgres)}.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    write_demo(tmp_path / "raw", DemoSpec(datasets=("jaffe",)))
    instance = DagsterInstance.from_config(str(home))
    resources = {"storage_resource": StorageResource(raw_dir=str(tmp_path / "raw"),
                                                     storage_dir=str(tmp_path / "storage"))}
    result = materialize([raw_images], partition_key="jaffe", resources=resources,
                         instance=instance)
    assert result.success
    event = DagsterInstance.from_config(str(home)).get_latest_materialization_event(
        AssetKey("raw_images"))
    assert event.dagster_event.partition == "jaffe"
    with psycopg2.connect(host="127.0.0.1", port=postgres, user="postgres",
                          dbname="dagster") as conn, conn.cursor() as cur:
        cur.execute("select count(*) from runs where run_id = %s", (result.run_id,))
        assert cur.fetchone()[0] == 1
        cur.execute("select count(*) from event_logs where run_id = %s and "
                    "dagster_event_type = 'ASSET_MATERIALIZATION'", (result.run_id,))
        assert cur.fetchone()[0] == 1
