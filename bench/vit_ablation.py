"""ViT-Tiny trained on the curated real FER2013 (+ CK+48), with and without the StarGAN
"disgust" faces, for the same fixed budget; evaluated on the real test split.

    python bench/vit_ablation.py [--steps 150] [--profile smoke] [--out bench/out/ablation]

Runs the pipeline on ../shared/datasets first (FER2013 image folders + CK+48 as raw/), then
fer_data.train_vit twice. On a GPU, pass e.g. --steps 0 --epochs 30 --profile full for the full
recipe; the same command runs unchanged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_pipeline(shared: Path, out: Path, profile: str) -> Path:
    from dagster import DagsterInstance, materialize

    from fer_data.definitions import defs
    from fer_data.defs.resources import StorageResource

    raw = out / "raw"
    if raw.exists():
        shutil.rmtree(raw)
    (raw / "ckplus").mkdir(parents=True)
    (raw / "fer2013").symlink_to(shared / "fer2013_images")
    (raw / "ckplus" / "CK+48").symlink_to(shared / "ckplus48")
    resources = {**defs.resources, "storage_resource": StorageResource(
        raw_dir=str(raw), storage_dir=str(out / "storage"), curated_dir=str(out / "curated"))}
    assets = list(defs.assets)
    instance = DagsterInstance.ephemeral()
    fast = {"ops": {"face_crops": {"config": {"quality_detector": "off"}}}}
    for dataset in ("fer2013", "ckplus"):
        partitioned = [a for a in assets if a.partitions_def is not None]
        assert materialize(partitioned, partition_key=dataset, resources=resources,
                           instance=instance, run_config=fast).success
    config = {"ops": {"stargan_model": {"config": {"profile": profile}},
                      "synthetic_faces": {"config": {"profile": profile}}}}
    result = materialize([a for a in assets if a.partitions_def is None
                          and a.key.to_user_string() != "vit_baseline"],
                         resources=resources, instance=instance, run_config=config)
    assert result.success
    return out / "curated" / "fer7"


def main() -> None:
    import torch

    from fer_data.torch_dataset import CuratedFaces
    from fer_data.train_vit import VitConfig, train_vit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "ablation")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps (0 = epochs)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--profile", default="smoke", choices=["smoke", "full"])
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    data = args.out / "curated" / "fer7"
    if not args.skip_pipeline:
        data = run_pipeline(args.shared, args.out, args.profile)
    pipeline_s = time.perf_counter() - start
    results = {}
    for variant in ("exclude", "include"):
        config = VitConfig(data=str(data), out=str(args.out / f"vit_{variant}"),
                           epochs=args.epochs, max_steps=args.steps,
                           batch_size=args.batch_size, synthetic=variant)
        results[variant] = train_vit(config)
    train = CuratedFaces(data, "train")
    synthetic = int(len(train) - len(CuratedFaces(data, "train", synthetic=False)))
    device = results["include"]["device"]
    print(f"\ndata: {data} ({len(train):,} training rows, {synthetic:,} synthetic disgust; "
          f"pipeline {pipeline_s:.0f} s)")
    print(f"budget: {args.steps or 'all'} steps x batch {args.batch_size}, {args.epochs} epoch "
          f"cap, device {device}, torch {torch.__version__}, StarGAN profile {args.profile}")
    print(f"{'synthetic':<10}{'train rows':>11}{'accuracy':>10}{'macro-F1':>10}"
          f"{'disgust F1':>12}{'seconds':>9}")
    for variant, r in results.items():
        print(f"{variant:<10}{r['train_rows']:>11,}{r['accuracy']:>10.4f}{r['macro_f1']:>10.4f}"
              f"{r['disgust_f1']:>12.4f}{r['seconds']:>9.0f}")
    (args.out / "table.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
