"""One StarGAN try on real faces: a profile plus overrides, trained (resumably) with every
checkpoint rated by the realism meter, one result file per try.

    .venv/bin/python bench/stargan_try.py NAME [--profile cpu] [--set FIELD=VALUE ...]
                                          [--iters N] [--work /tmp/fer-real]

Needs a --work folder where bench/judge.py (or bench/synthetic.py) ran face_index, splits and
expression_judge. Checkpoints go to /tmp/fer-tries/NAME (run again to continue a stopped try);
the figures of every checkpoint (judge hit rate, SSIM to source, identity SSIM, eyes ratio,
Frechet distance and its ceiling, eligible) to bench/results/synthetic/tries/NAME.json, and the
last checkpoint's translation grid beside it (NAME.png) for a look.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
from common import REPO

from fer_data.artefacts import judge_dir, split_faces
from fer_data.augment import (
    SCORE_SOURCES,
    load_training_faces,
    stargan_config,
    translation_grid,
)
from fer_data.images import encode_png
from fer_data.judge import load_judge
from fer_data.quality import RealismMeter, checkpoint_scorer, fixed_sources
from fer_data.storage import StorageLayout, atomic_write_bytes
from stargan.generate import load_trained
from stargan.train import TrainConfig, load_checkpoint, train

RESULTS = REPO / "bench" / "results" / "synthetic" / "tries"


def parse_override(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    kinds = {f.name: f.type for f in fields(TrainConfig)}
    if name not in kinds:
        raise SystemExit(f"--set {text}: {name!r} is not a TrainConfig field")
    kind = kinds[name]
    if kind in ("bool", bool):
        return name, value.lower() in ("1", "true", "yes")
    for cast in (int, float):
        if kind in (cast.__name__, cast):
            return name, cast(value)
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--set", action="append", default=[], type=parse_override)
    parser.add_argument("--iters", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-real"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layout = StorageLayout.from_env(str(args.work / "raw"), str(args.work / "storage"),
                                    str(args.work / "curated"))
    config = replace(stargan_config(args.profile, ("angry", "disgust", "fear", "happy", "sad",
                                                   "surprise", "neutral"), args.seed,
                                    args.iters), **dict(args.set))
    judge, _ = load_judge(judge_dir(layout))
    real = split_faces(layout, "fer7")
    data = load_training_faces(layout, "fer7", config.image_size)
    meter = RealismMeter(fixed_sources(real["val"], SCORE_SOURCES, args.seed), real["val"],
                         judge, "disgust", config.image_size)
    out = Path("/tmp/fer-tries") / args.name
    result = {"profile": args.profile, "overrides": dict(args.set),
              "config": {k: v for k, v in asdict(config).items() if k != "domains"},
              "points": []}
    path = RESULTS / f"{args.name}.json"
    if path.exists() and (out / "checkpoint.pt").exists():  # a resumed try: its points so far
        result["points"] = json.loads(path.read_text())["points"]
    scorer = checkpoint_scorer(meter)

    def score_and_record(G) -> dict:
        """Every checkpoint's figures go to the result file as they come."""
        figures = scorer(G)
        # the step is known to train() only: at the end, the checkpoint's history replaces these
        result["points"].append({"checkpoint": len(result["points"]) + 1, **figures})
        RESULTS.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(result, indent=1).encode())
        return figures

    last = train(config, data.images, data.labels, out, scorer=score_and_record)
    points = [h for h in load_checkpoint(last)["history"] if "judge_hit_rate" in h]
    result["points"] = points  # the checkpoint's own record, with step and minutes
    atomic_write_bytes(path, json.dumps(result, indent=1).encode())
    grid = translation_grid(load_trained(last).G, fixed_sources(real["val"], 1, 5),
                            config.image_size)
    atomic_write_bytes(RESULTS / f"{args.name}.png", encode_png(grid))
    for p in points:
        print(f"step {p['step']:5d} {p['seconds'] / 60:5.1f} min  hit {p['judge_hit_rate']:.3f}"
              f"  ssim {p['ssim_to_source']:.3f}  id {p['identity_ssim']:.3f}"
              f"  eyes {p['eyes_ratio']:.2f}  fd {p['frechet']:.2f}/{p['frechet_ceiling']:.2f}"
              f"  eligible {int(p['eligible'])}")
        by_source = {k.removeprefix("hit_rate_from_"): v for k, v in p.items()
                     if k.startswith("hit_rate_from_")}
        if by_source:
            print("      hit rate by source class:",
                  "  ".join(f"{k} {v:.2f}" for k, v in by_source.items()))
    print("grid:", RESULTS / f"{args.name}.png")


if __name__ == "__main__":
    main()
