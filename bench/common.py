"""What the real-data benches share: the real FER2013 image export + CK+48 run through the
pipeline once into a work folder that later benches reuse.

    from common import real_pipeline
    layout = real_pipeline(Path("/tmp/fer-real"), ["face_index", "splits"])
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dagster import DagsterInstance

from fer_data.defs.resources import StorageResource
from fer_data.run import materialize_assets
from fer_data.storage import StorageLayout

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO.parent / "shared" / "datasets").resolve()
DATASETS = ("fer2013", "ckplus")


def real_raw(work: Path, shared: Path = SHARED) -> Path:
    """work/raw with the real FER2013 export and CK+48 linked in their original layouts."""
    raw = work / "raw"
    if not raw.exists():
        if not (shared / "fer2013_images").exists():
            raise SystemExit(f"{shared} has no fer2013_images: this bench needs the real data")
        raw.mkdir(parents=True)
        (raw / "fer2013").symlink_to(shared / "fer2013_images")
        (raw / "ckplus").mkdir()
        (raw / "ckplus" / "CK+48").symlink_to(shared / "ckplus48")
    return raw


def real_pipeline(work: Path, assets: list[str], config: dict | None = None,
                  force: bool = False) -> tuple[StorageLayout, dict[str, float]]:
    """Materialize raw_images + face_crops for the real datasets, then `assets`, into work/
    (skipping what a previous run left there unless `force`); seconds per step."""
    storage = StorageResource(raw_dir=str(real_raw(work)), storage_dir=str(work / "storage"),
                              curated_dir=str(work / "curated"))
    layout = storage.layout()
    instance = DagsterInstance.ephemeral()
    seconds = {}
    for dataset in DATASETS:
        if force or not layout.table("face_crops", dataset).exists():
            start = time.perf_counter()
            assert materialize_assets(["raw_images", "face_crops"], dataset, storage=storage,
                                      instance=instance).success
            seconds[f"raw_images + face_crops [{dataset}]"] = time.perf_counter() - start
    for name in assets:
        start = time.perf_counter()
        assert materialize_assets([name], storage=storage, instance=instance,
                                  ops_config=config).success
        seconds[name] = time.perf_counter() - start
    return layout, seconds


# imagededup's PHash over a folder (encode + find_duplicates at distance 4), run in its own
# process from the folder it was pip-installed into (not a project dependency)
IMAGEDEDUP = """
import json, sys, time
from imagededup.methods import PHash
start = time.perf_counter()
hasher = PHash(verbose=False)
encodings = hasher.encode_images(image_dir=sys.argv[1], recursive=True)
encoded = time.perf_counter() - start
dups = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=4)
print(json.dumps({"files": len(encodings), "encode": encoded,
                  "total": time.perf_counter() - start,
                  "with_duplicates": sum(1 for v in dups.values() if v)}))
"""


def run_imagededup(folder: Path, installed: Path) -> dict:
    """imagededup on every image under folder: files, encode and total seconds, files with a
    duplicate; or {"error": why} when it did not run."""
    peer = subprocess.run([sys.executable, "-c", IMAGEDEDUP, str(folder)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(installed)})
    if peer.returncode:
        return {"error": f"imagededup failed (installed in {installed}?): "
                         f"{peer.stderr.strip().splitlines()[-1:]}"}
    return json.loads(peer.stdout.strip().splitlines()[-1])
