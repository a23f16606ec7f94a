"""Did a refactor change what the pipeline keeps? The demo data through ingest, faces,
de-duplication and splits with this checkout and with an older commit (a git worktree), then
the split tables (image_id, dataset, label, subject, split, rule: what the curated real rows
are made of) compared row for row.

    .venv/bin/python bench/same_rows.py REF [--work /tmp/fer-same-rows]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]

# run inside either checkout (PYTHONPATH picks which): write the demo, materialize to splits
CHILD = r"""
import sys
from pathlib import Path
from dagster import DagsterInstance, materialize
out = Path(sys.argv[1])
try:
    from fer_data.datasets import write_demo
    from fer_data.demo import DemoSpec
except (ImportError, AttributeError):  # before the dataset registry
    from fer_data.demo import DemoSpec, write_demo
write_demo(out / "raw", DemoSpec(seed=0))
from fer_data.definitions import defs
from fer_data.defs.resources import StorageResource
d = defs()
resources = {**d.resources, "storage_resource": StorageResource(
    raw_dir=str(out / "raw"), storage_dir=str(out / "storage"), curated_dir=str(out / "cur"))}
assets = {a.key.to_user_string(): a for a in d.assets if len(a.keys) == 1}
partitions = assets["raw_images"].partitions_def.get_partition_keys()
for p in partitions:
    assert materialize([assets["raw_images"], assets["face_crops"]], partition_key=p,
                       resources=resources, instance=DagsterInstance.ephemeral()).success
assert materialize([assets["face_index"], assets["splits"]], resources=resources,
                   instance=DagsterInstance.ephemeral()).success
"""


def run(tree: Path, out: Path) -> pd.DataFrame:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", CHILD, str(out)], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    table = pd.read_parquet(out / "storage" / "splits" / "all.parquet")
    return table.sort_values("image_id").reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="the commit to compare with, e.g. HEAD~3")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-same-rows"))
    args = parser.parse_args()
    old_tree = args.work / "ref"
    if not old_tree.exists():
        subprocess.run(["git", "worktree", "add", "-f", "--detach", str(old_tree), args.ref],
                       cwd=REPO, check=True)
    old, new = run(old_tree, args.work / "old"), run(REPO, args.work / "new")
    print(f"{args.ref}: {len(old)} rows; this checkout: {len(new)} rows")
    print("per split:", new.groupby("split").size().to_dict())
    same = old.equals(new)
    if same:
        print("identical")
    elif len(old) == len(new):
        print("DIFFERENT:\n" + old.compare(new).head(20).to_string())
    else:
        ids = set(old["image_id"]) ^ set(new["image_id"])
        print(f"DIFFERENT: {len(ids)} image_ids in one run only, e.g. {sorted(ids)[:5]}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
