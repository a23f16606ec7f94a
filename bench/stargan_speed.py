"""StarGAN training speed: iterations/s and peak memory for the smoke and full profiles on this
machine's device, each beside a plain eager run of the same config, in one invocation.

    python bench/stargan_speed.py [--iters 60] [--device cpu|cuda]

Every config runs in its own process (so peak RSS is its own), on random 1-channel faces; the
"variant" column is channels_last memory format (CPU) or bf16 autocast + channels_last (CUDA).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def run_one(spec: dict) -> dict:
    import torch

    from stargan.train import PROFILES, train

    config = replace(PROFILES[spec["profile"]], device=spec["device"], num_iters=spec["iters"],
                     num_iters_decay=spec["iters"] // 2, checkpoint_every=10**9,
                     log_every=10**9, channels_last=spec["variant"], c_dim=7,
                     amp=spec["variant"] and spec["device"] == "cuda",
                     **spec.get("override", {}))
    size = config.image_size
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(512, 1, size, size, generator=gen) * 2 - 1
    labels = torch.randint(0, 7, (512,), generator=gen)
    warm = max(5, spec["iters"] // 10)
    with tempfile.TemporaryDirectory() as tmp:
        train(replace(config, num_iters=warm, num_iters_decay=warm // 2), images, labels,
              Path(tmp) / "warm", log=lambda m: None)
        if spec["device"] == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        train(config, images, labels, Path(tmp) / "run", log=lambda m: None)
        if spec["device"] == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if spec["device"] == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"it_s": spec["iters"] / seconds, "peak_mb": peak}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(run_one(json.loads(sys.argv[2]))))
        return
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    rows = [
        ("smoke (48px, conv 16, 2 res)", "smoke", {}, args.iters),
        ("cpu (48px, conv 32, 3 res, n_critic 1)", "cpu", {}, max(args.iters // 3, 10)),
        ("48px, conv 32, 6 res", "smoke", {"g_conv_dim": 32, "d_conv_dim": 32,
                                           "g_repeat_num": 6}, max(args.iters // 3, 10)),
        ("full (64px, conv 64, 6 res)", "full", {},
         args.iters * (20 if args.device == "cuda" else 1) // 6 or 5),
    ]
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          "batch 16, n_critic 5 unless named")
    print(f"{'config':40}{'iters':>6}{'eager it/s':>12}{'variant it/s':>14}{'ratio':>7}"
          f"{'peak MB (eager)':>17}")
    for name, profile, override, iters in rows:
        results = []
        for variant in (False, True):
            spec = {"profile": profile, "device": args.device, "iters": iters,
                    "variant": variant, "override": override}
            out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)],
                                 capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        eager, variant = results
        print(f"{name:40}{iters:>6}{eager['it_s']:>12.2f}{variant['it_s']:>14.2f}"
              f"{variant['it_s'] / eager['it_s']:>7.2f}{eager['peak_mb']:>17,.0f}")


if __name__ == "__main__":
    main()
