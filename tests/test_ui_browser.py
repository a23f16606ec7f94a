"""The Dagster web UI as a person uses it: a real `dagster dev` on loopback, driven by headless
Chromium (Debian's package) through Playwright: open the asset graph, Materialize all, wait for
the backfill, open the curated dataset and see its preview. Screenshots go to
tests/screenshots/ (the README shows one)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fer_data.datasets import write_demo
from fer_data.demo import DemoSpec

from conftest import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).parent / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt "
                                "install chromium); .ci/run installs it")


@pytest.fixture
def dagster_dev(tmp_path):
    write_demo(tmp_path / "raw", DemoSpec(datasets=("jaffe", "kdef")))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(Path(__file__).parents[1] / "dagster_home" / "dagster.yaml", home)
    # the first-visit newsletter dialog is shown once per instance until this file exists
    # (dagster._core.nux); it opens at a moment that depends on the machine and would cover
    # the asset graph, so this instance has seen it
    (home / ".nux").mkdir()
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "FER_RAW_DIR": str(tmp_path / "raw"),
           "FER_STORAGE_DIR": str(tmp_path / "storage"),
           "FER_CURATED_DIR": str(tmp_path / "curated")}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-m", "fer_data.definitions", "-h",
                             "127.0.0.1", "-p", str(port)], env=env, cwd=tmp_path,
                            stdout=open(tmp_path / "dev.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(url + "/server_info", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError((tmp_path / "dev.log").read_text()[-3000:]) from None
                time.sleep(1)
        yield url, home, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a slow shutdown is not what these tests test
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def wait_for_materialization(home: Path, asset: str, timeout: float) -> None:
    from dagster import AssetKey, DagsterInstance

    instance = DagsterInstance.from_config(str(home))
    deadline = time.time() + timeout
    while instance.get_latest_materialization_event(AssetKey(asset)) is None:
        failed = [r for r in instance.get_runs(limit=50) if r.status.value == "FAILURE"]
        assert not failed, f"run failed: {failed[0].run_id}"
        if time.time() > deadline:
            raise TimeoutError(f"{asset} not materialized within {timeout} s")
        time.sleep(3)


def test_materialize_all_from_the_ui_and_see_the_curated_preview(dagster_dev):
    from playwright.sync_api import expect, sync_playwright

    url, home, _ = dagster_dev
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/asset-groups")
        # everything but the on-demand augmentation experiment
        page.locator(".CodeMirror").first.click()
        page.keyboard.type("not key:augmentation_experiment")
        page.keyboard.press("Enter")
        expect(page.get_by_text("publish").first).to_be_visible(timeout=30_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=SHOTS / "asset_graph.png")
        page.get_by_role("button", name="Materialize all").click()
        page.get_by_role("button", name="All", exact=True).click()
        page.get_by_role("button", name="Launch backfill").click()
        wait_for_materialization(home, "curated_dataset", timeout=900)

        page.goto(url + "/assets/curated_dataset")
        row = page.locator("tr", has_text="fer7_class_balance")
        expect(row).to_be_visible(timeout=60_000)
        row.get_by_text("Show Markdown").click()
        preview = page.locator("img[src^='data:image/png']").first
        expect(preview).to_be_visible(timeout=60_000)
        assert preview.evaluate("img => img.naturalWidth") > 100
        page.screenshot(path=SHOTS / "curated_dataset.png", full_page=True)
        browser.close()
