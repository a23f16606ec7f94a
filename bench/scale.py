"""AffectNet scale: face_index + splits + curated_dataset on a 1,000,000-face stress set built
from the real faces, and the de-dup index against imagededup on the 35,887 FER2013 files.

    .venv/bin/python bench/scale.py [--faces 1000000] [--work /tmp/fer-scale]
                                    [--imagededup /tmp/imagededup] [--real /tmp/fer-real]

1. The stress set (built once, kept in --work): every real face of the FER2013 image export and
   CK+48 (face_crops of bench/common.real_pipeline) plus perturbed copies of it until there are
   --faces faces: a crop of 1-2 px per side resized back, a shift of 1-2 px, a JPEG re-encode
   (quality 30-90), a global contrast or gamma change, a mirror, or two of these. The faces and
   their de-dup keys are computed as face_crops computes them for pre-cropped faces and written
   straight into the `affectnet` partition of face_crops (one partition the size of AffectNet
   with its automatic labels), streamed in row groups; `manifest.parquet` lists each copy's
   origin and perturbation.
2. face_index, splits and curated_dataset, each materialized in a fresh process (one Dagster
   instance): wall seconds and the process's peak RSS.
3. Ground truth from the manifest: every copy must sit in its origin's cluster.
4. imagededup's PHash (encode + find_duplicates at distance 4, in its own process) against the
   project's build_index over the same 35,887 FER2013 faces (keys from face_crops), one after
   the other.

imagededup is not a project dependency: install it into a folder of its own,
    pip install --no-deps --target /tmp/imagededup imagededup scikit-learn joblib \\
        threadpoolctl cloudpickle narwhals
Results go to bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import REPO, real_pipeline, run_imagededup
from PIL import Image

from fer_data import schema
from fer_data.datasets import keeper_priority
from fer_data.dedup import DedupOptions, build_index, crop_keys, source_keys
from fer_data.images import decode_png, encode_png
from fer_data.readers.base import image_id
from fer_data.storage import StorageLayout, read_table

PARTITION = "affectnet"
PERTURBATIONS = ("crop", "shift", "jpeg", "contrast", "mirror")
RESULTS = REPO / "bench" / "results" / "scale.json"
STEP = """
import sys
from dagster import DagsterInstance
from fer_data.run import materialize_assets
sys.exit(0 if materialize_assets([sys.argv[1]], instance=DagsterInstance.get()).success else 1)
"""


def perturb(face: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One copy of a 48x48 gray face, processed the way re-exports and augmenting uploaders do."""
    side = face.shape[0]
    if kind == "crop":
        left, top, right, bottom = rng.integers(1, 3, 4)
        return cv2.resize(face[top:side - bottom, left:side - right], (side, side),
                          interpolation=cv2.INTER_LINEAR)
    if kind == "shift":
        dx, dy = rng.integers(-2, 3, 2)
        matrix = np.float32([[1, 0, dx], [0, 1, dy]])
        return cv2.warpAffine(face, matrix, (side, side), borderMode=cv2.BORDER_REPLICATE)
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, format="JPEG", quality=int(rng.integers(30, 91)))
        return np.asarray(Image.open(buf).convert("L"))
    if kind == "contrast":
        x = face.astype(np.float64)
        if rng.random() < 0.5:
            x = rng.uniform(0.6, 1.3) * (x - x.mean()) + x.mean() + rng.uniform(-20, 20)
        else:
            x = 255.0 * (x / 255.0) ** rng.uniform(0.7, 1.4)
        return np.clip(np.round(x), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(face[:, ::-1])  # mirror


def face_rows(faces: list[np.ndarray], meta: list[dict]) -> pa.Table:
    """What face_crops writes for pre-cropped faces (a passthrough crop), keys included."""
    keys = {**crop_keys(faces), **source_keys(faces)}
    n = len(faces)
    side = faces[0].shape[0]
    columns = {
        "image_id": [m["image_id"] for m in meta],
        "dataset": [PARTITION] * n,
        "source_path": [m["source_path"] for m in meta],
        "label": [m["label"] for m in meta],
        "original_label": [m["label"] for m in meta],
        "official_split": [m["official_split"] for m in meta],
        "width": [side] * n, "height": [side] * n,
        "face": [encode_png(f) for f in faces],
        "face_size": [side] * n,
        "bbox": [[0.0, 0.0, float(side), float(side)]] * n,
        "detector": ["none"] * n,
        "n_faces": [1] * n,
        **keys,
    }
    return pa.Table.from_pydict({k: columns.get(k, pa.nulls(n, schema.FACE.field(k).type))
                                 for k in schema.FACE.names}, schema=schema.FACE)


def build_chunk(task: tuple) -> tuple[pa.Table, list[tuple]]:
    """Rows for one chunk of origins and their copies; the manifest lines of the copies."""
    seed, origins, copies = task
    rng = np.random.default_rng(seed)
    faces, meta, manifest = [], [], []
    for origin, n_copies in zip(origins, copies, strict=True):
        pixels = decode_png(origin["face"])
        origin_id = image_id(PARTITION, origin["source_path"])
        faces.append(pixels)
        meta.append({"image_id": origin_id, "source_path": origin["source_path"],
                     "label": origin["label"], "official_split": origin["official_split"]})
        for k in range(n_copies):
            kinds = list(rng.choice(PERTURBATIONS, size=1 + int(rng.random() < 0.3),
                                    replace=False))
            copy = pixels
            for kind in kinds:
                copy = perturb(copy, kind, rng)
            path = f"copies/{origin['source_path']}#{k}"
            faces.append(copy)
            meta.append({"image_id": image_id(PARTITION, path), "source_path": path,
                         "label": origin["label"], "official_split": None})
            manifest.append((meta[-1]["image_id"], origin_id, "+".join(kinds)))
    return face_rows(faces, meta), manifest


def build_stress(real: StorageLayout, layout: StorageLayout, total: int, work: Path,
                 workers: int) -> dict:
    target = layout.table("face_crops", PARTITION)
    manifest_path = work / "manifest.parquet"
    if Path(target).exists() and manifest_path.exists():
        return {"faces": pq.read_metadata(target).num_rows, "built_seconds": None}
    origins = []
    for dataset in ("fer2013", "ckplus"):
        table = read_table(real.table("face_crops", dataset),
                           columns=["source_path", "label", "official_split", "face"])
        rows = table.to_pylist()
        for r in rows:
            r["source_path"] = f"{dataset}/{r['source_path']}"
        origins += rows
    per_origin = np.full(len(origins), total // len(origins) - 1)
    per_origin[: total - int(per_origin.sum()) - len(origins)] += 1
    chunk = 400
    tasks = [(i, origins[i:i + chunk], per_origin[i:i + chunk].tolist())
             for i in range(0, len(origins), chunk)]
    start = time.perf_counter()
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    partial = Path(str(target) + ".building")
    lines = []
    with pq.ParquetWriter(partial, schema.FACE) as writer, \
            multiprocessing.get_context("spawn").Pool(workers) as pool:
        for n, (table, manifest) in enumerate(pool.imap(build_chunk, tasks), start=1):
            writer.write_table(table, row_group_size=8192)
            lines += manifest
            if n % 10 == 0:
                print(f"  stress set: {n}/{len(tasks)} chunks, "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
    os.replace(partial, target)
    copies, origins_of, kinds = zip(*lines, strict=True)
    pq.write_table(pa.table({"image_id": copies, "origin_id": origins_of,
                             "perturbation": kinds}), manifest_path)
    return {"faces": len(origins) + len(lines), "built_seconds": time.perf_counter() - start}


def run_step(asset: str, env: dict) -> dict:
    """Materialize one asset in a fresh process: wall seconds and that process's peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", STEP, asset], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{asset} failed (exit {proc.returncode})")
    return {"seconds": round(time.perf_counter() - start, 1),
            "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}


def real_with_index(work: Path) -> StorageLayout:
    """The real pipeline's face_crops (bench/common.real_pipeline) and its face_index, which
    real_picture_of reads, materialized where a previous run did not leave one."""
    real, _ = real_pipeline(work, [])
    if not Path(real.table("face_index", "all")).exists():
        real_pipeline(work, ["face_index"])
    return real


def real_picture_of(faces: pa.Table, origin: dict[str, str], real: StorageLayout) -> np.ndarray:
    """Each stress face's real picture: its origin's (`origin`: copy -> origin image_id, from
    the manifest) cluster in the real pipeline's face_index, so FER2013's own repeats of one
    photograph count once. `faces` holds image_id and source_path."""
    real_index = read_table(real.table("face_index", "all"),
                            columns=["dataset", "source_path", "cluster_id"]).to_pylist()
    cluster = {f"{r['dataset']}/{r['source_path']}": r["cluster_id"] for r in real_index}
    ids = faces.column("image_id").to_pylist()
    path = dict(zip(ids, faces.column("source_path").to_pylist(), strict=True))
    return np.array([cluster[path[origin.get(i, i)]] for i in ids])


def pictures_per_cluster(cluster: np.ndarray, picture: np.ndarray) -> np.ndarray:
    """How many distinct pictures each cluster id joins (0 for ids no face has)."""
    span = int(picture.max()) + 1
    return np.bincount(np.unique(cluster.astype(np.int64) * span + picture) // span)


def copies_found(layout: StorageLayout, work: Path, real: StorageLayout) -> dict:
    """Against the manifest: the planted copies outside their origin's cluster, and how many
    pictures (origins: a real face with its copies) each cluster joins. Real FER2013 repeats
    some photographs, so a few pictures per cluster are expected; dozens are false joins. The
    same count in real pictures (`real_picture_of`) counts those repeats once."""
    index = read_table(layout.table("face_index", "all"),
                       columns=["image_id", "source_path", "cluster_id"])
    ids = index.column("image_id").to_pylist()
    cluster = dict(zip(ids, index.column("cluster_id").to_pylist(), strict=True))
    manifest = pq.read_table(work / "manifest.parquet").to_pylist()
    missed_rows = [row for row in manifest if cluster[row["image_id"]] != cluster[row["origin_id"]]]
    missed: dict[str, int] = {}
    for row in missed_rows:
        missed[row["perturbation"]] = missed.get(row["perturbation"], 0) + 1
    origin = {row["image_id"]: row["origin_id"] for row in manifest}
    cluster_ids = index.column("cluster_id").to_numpy()
    own_picture = np.unique([origin.get(face, face) for face in ids], return_inverse=True)[1]
    per = pictures_per_cluster(cluster_ids, own_picture)
    per = per[per > 0]
    sizes = np.bincount(cluster_ids)
    per_real = pictures_per_cluster(cluster_ids, real_picture_of(index, origin, real))
    return {"planted": len(manifest), "missed": sum(missed.values()),
            "missed_by_perturbation": missed,
            "missed_origins": len({row["origin_id"] for row in missed_rows}),
            "largest_cluster_faces": int(sizes.max()),
            "most_pictures_in_a_cluster": int(per.max()),
            "clusters_joining_over_10_pictures": int((per > 10).sum()),
            "most_real_pictures_in_a_cluster": int(per_real.max()),
            "clusters_joining_over_10_real_pictures": int((per_real > 10).sum()),
            "pictures_per_cluster": {str(k): int(v) for k, v in
                                     zip(*np.unique(np.minimum(per, 11), return_counts=True),
                                         strict=True)}}


def imagededup_ratio(real: StorageLayout, fer_files: Path, imagededup: Path) -> dict:
    fer = read_table(real.table("face_crops", "fer2013"))
    start = time.perf_counter()
    result = build_index(fer, DedupOptions(dataset_priority=keeper_priority()))
    ours = time.perf_counter() - start
    theirs = run_imagededup(fer_files, imagededup)
    if "error" in theirs:
        raise SystemExit(theirs["error"])
    return {"faces": fer.num_rows, "project_seconds": round(ours, 2), "pairs": result.pairs,
            "imagededup_seconds": round(theirs["total"], 1),
            "imagededup_encode_seconds": round(theirs["encode"], 1),
            "ratio": round(theirs["total"] / ours, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-scale"))
    parser.add_argument("--real", type=Path, default=Path("/tmp/fer-real"))
    parser.add_argument("--imagededup", type=Path, default=Path("/tmp/imagededup"))
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="processes that build the stress set")
    parser.add_argument("--build-only", action="store_true", help="stop after the stress set")
    args = parser.parse_args()

    real = real_with_index(args.real)
    work = args.work
    env = {**os.environ, "DAGSTER_HOME": str(work / "home"), "FER_RAW_DIR": str(work / "raw"),
           "FER_STORAGE_DIR": str(work / "storage"), "FER_CURATED_DIR": str(work / "curated")}
    (work / "home").mkdir(parents=True, exist_ok=True)
    (work / "raw").mkdir(exist_ok=True)
    layout = StorageLayout.from_env(env["FER_RAW_DIR"], env["FER_STORAGE_DIR"],
                                    env["FER_CURATED_DIR"])
    stress = build_stress(real, layout, args.faces, work, args.workers)
    print(f"stress set: {stress['faces']:,} faces in face_crops/{PARTITION}"
          + (f" (built in {stress['built_seconds']:.0f} s)" if stress["built_seconds"] else ""))
    if args.build_only:
        return
    steps = {asset: run_step(asset, env) for asset in ("face_index", "splits", "curated_dataset")}
    total = sum(s["seconds"] for s in steps.values())
    found = copies_found(layout, work, real)
    peer = imagededup_ratio(real, args.real / "raw" / "fer2013", args.imagededup)
    result = {"faces": stress["faces"], "steps": steps, "total_seconds": round(total, 1),
              "peak_rss_gib": max(s["peak_rss_gib"] for s in steps.values()),
              "copies": found, "imagededup": peer, "cores": os.cpu_count()}
    print(f"\n| step ({stress['faces']:,} faces, {os.cpu_count()} cores) | seconds | "
          "peak RSS GiB |\n|---|---:|---:|")
    for asset, s in steps.items():
        print(f"| {asset} | {s['seconds']:.1f} | {s['peak_rss_gib']:.2f} |")
    print(f"| total (budget 600 s, 12 GiB) | {total:.1f} | {result['peak_rss_gib']:.2f} |")
    print(f"planted copies in their origin's cluster: {found['planted'] - found['missed']:,} "
          f"of {found['planted']:,} (missed by perturbation: {found['missed_by_perturbation']})")
    print(f"largest cluster: {found['largest_cluster_faces']:,} faces; most pictures joined in "
          f"one cluster: {found['most_pictures_in_a_cluster']}; clusters joining more than 10: "
          f"{found['clusters_joining_over_10_pictures']}")
    print(f"FER2013 ({peer['faces']:,} faces): project index {peer['project_seconds']:.1f} s, "
          f"imagededup {peer['imagededup_seconds']:.1f} s: {peer['ratio']:.1f}x")
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
