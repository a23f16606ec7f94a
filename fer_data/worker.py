"""Start a Celery worker for FER_EXECUTOR=celery runs, on this machine:

    python -m fer_data.worker [--queues dagster,gpu] [--concurrency N] [--name NAME]

Queues: `dagster` takes the CPU steps, `gpu` the StarGAN and experiment steps; a GPU machine
runs `--queues gpu` (or both), a CPU machine `--queues dagster`. The worker uses the broker and
result backend of FER_CELERY_BROKER / FER_CELERY_BACKEND, as the launching process does, and
runs steps against this machine's DAGSTER_HOME (the instance: PostgreSQL when shared) and
FER_RAW_DIR / FER_STORAGE_DIR / FER_CURATED_DIR (a shared volume or an fsspec root).
Stop it by signalling its process group: the `celery` child outlives a signal to the parent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fer_data.defs.celery_executor import QUEUES, WORKER_CONFIG, celery_settings
from fer_data.instance import ensure_instance_config


def worker_yaml(folder: Path) -> Path:
    """The worker's config (dagster-celery's `execution: config:` block) written to a file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "celery_worker.yaml"
    config = {"execution": {"config": {**celery_settings(), "config_source": WORKER_CONFIG}}}
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", default=",".join(QUEUES),
                        help="comma-separated queues to consume (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="steps at once (default 1: one step uses every core)")
    parser.add_argument("--name", default=None, help="worker name (default: a unique one)")
    args = parser.parse_args(argv)
    unknown = set(args.queues.split(",")) - set(QUEUES)
    if unknown:
        parser.error(f"unknown queue(s) {sorted(unknown)}: choose from {', '.join(QUEUES)}")
    home = ensure_instance_config().parent
    # one -q with a comma-separated list: given twice, dagster-celery passes -Q twice and
    # Celery keeps only the last queue
    bin_dir = Path(sys.executable).parent  # dagster-celery runs `celery` from PATH
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(bin_dir / "dagster-celery"), "worker", "start",
               "-A", "dagster_celery.app", "-y", str(worker_yaml(home)), "-q", args.queues,
               *(["-n", args.name] if args.name else []), "--",
               f"--concurrency={args.concurrency}"]
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
