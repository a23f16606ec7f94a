"""The Dagster instance folder ($DAGSTER_HOME) gets the project's dagster.yaml on first use:
storage under the folder, and run concurrency as `make run` expects (at most 2 runs at a time,
GPU steps one at a time). Without one, Dagster warns in every process and runs without those
limits. A dagster.yaml already there is the user's and is never touched.

    python -m fer_data.instance   # what `make run` and `make ui` do first
"""

from __future__ import annotations

import os
from pathlib import Path

from fer_data.storage import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "dagster_home" / "dagster.yaml"


def ensure_instance_config(home: str | Path | None = None) -> Path:
    """$DAGSTER_HOME/dagster.yaml, written from TEMPLATE when absent (exclusive create: two
    processes starting at once cannot both write it)."""
    home = Path(home or os.environ.get("DAGSTER_HOME") or TEMPLATE.parent)
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        try:
            with open(target, "xb") as f:
                f.write(TEMPLATE.read_bytes())
        except FileExistsError:
            pass
    return target


if __name__ == "__main__":
    print(ensure_instance_config())
