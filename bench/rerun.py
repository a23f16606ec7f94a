"""What `make run` costs: a cold run one dataset at a time (the baseline), a cold run with datasets
in parallel, a second run with nothing changed, and a run after one dataset folder changed.
Each runs `python -m fer_data.run` in a fresh process, as `make run` does.

    python bench/rerun.py [--raw DIR] [--jobs 2] [--changed jaffe]

--raw defaults to a fresh copy of the built-in demo data; point it at a raw/ folder to time
your own datasets (the changed-folder step then touches one file's mtime in it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from dagster import DagsterInstance  # noqa: E402

from fer_data.datasets import write_demo  # noqa: E402
from fer_data.demo import DemoSpec  # noqa: E402


def materializations(home: Path) -> Counter:
    """Materialization events per asset in the instance at `home`."""
    with DagsterInstance.from_config(str(home)) as instance:
        return Counter({key.to_user_string(): len(instance.fetch_materializations(
            key, limit=10_000).records) for key in instance.get_asset_keys()})


def timed_run(work: Path, raw: Path, home: Path, jobs: int) -> tuple[float, Counter]:
    """Seconds for one `python -m fer_data.run`, and the materializations it added."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)  # the instance `make run` uses
    env = {**os.environ, "DAGSTER_HOME": str(home), "FER_RAW_DIR": str(raw),
           "FER_STORAGE_DIR": str(home / "storage"), "FER_CURATED_DIR": str(home / "curated")}
    before = materializations(home)
    log = work / f"{home.name}.log"
    start = time.perf_counter()
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "fer_data.run", "--jobs", str(jobs)],
                              cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"fer_data.run failed (exit {done.returncode}); log: {log}")
    return seconds, materializations(home) - before


def touch_one_file(folder: Path) -> Path:
    """Change one file's mtime, which changes the folder's fingerprint."""
    path = next(p for p in sorted(folder.rglob("*")) if p.is_file())
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, help="raw/ folder (default: fresh demo data)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--changed", default="jaffe", help="dataset folder to touch")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fer-rerun-"))
    raw = args.raw
    if raw is None:
        raw = work / "raw"
        write_demo(raw, DemoSpec(seed=0))
    print(f"raw data {raw}; logs and instances in {work}")

    rows = []
    seconds, ran = timed_run(work, raw, work / "serial", jobs=1)
    rows.append(("cold, 1 dataset at a time (baseline)", seconds, ran))
    seconds, ran = timed_run(work, raw, work / "parallel", jobs=args.jobs)
    rows.append((f"cold, {args.jobs} datasets at a time", seconds, ran))
    seconds, ran = timed_run(work, raw, work / "parallel", jobs=args.jobs)
    rows.append(("second run, nothing changed", seconds, ran))
    touched = touch_one_file(raw / args.changed)
    seconds, ran = timed_run(work, raw, work / "parallel", jobs=args.jobs)
    rows.append((f"after touching {touched.relative_to(raw)}", seconds, ran))

    baseline = rows[0][1]
    print(f"\n{'run':<48} {'seconds':>8} {'vs baseline':>12}  materialized")
    for name, seconds, ran in rows:
        what = ", ".join(f"{k} x{v}" for k, v in sorted(ran.items())) or "nothing"
        print(f"{name:<48} {seconds:>8.1f} {baseline / seconds:>11.1f}x  {what}")


if __name__ == "__main__":
    main()
