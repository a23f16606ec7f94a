"""The expression judge on real data: accuracy against training minutes, and what pays on this
CPU.

    .venv/bin/python bench/judge.py [--work /tmp/fer-real] [--epochs 10] [--minutes 0]

The real FER2013 image export + CK+48 go through the pipeline (raw_images, face_crops,
face_index, splits; reused from an earlier run in --work), then:
1. speed: training steps per second for the compact CNN with 1 and 2 threads, channels_last
   on/off, and torch.compile, 40 steps each after 5 warm-up steps (bf16 autocast measured slower
   than fp32 on these CPUs, so it is not offered);
2. the expression_judge asset itself (class-weighted, best epoch on val; its model stays in
   --work for bench/synthetic.py), with validation accuracy after every epoch against minutes
   and the test metrics;
3. with --baseline, beside it: the same budget without class weighting.
Results go to bench/results/judge.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import REPO, real_pipeline

from fer_data.artefacts import judge_dir, split_faces
from fer_data.classifier import FitOptions, build_model, train_step
from fer_data.defs.evaluate import JudgeConfig
from fer_data.judge import train_judge


def steps_per_second(data, threads: int, channels_last: bool, compile_model: bool) -> float:
    torch.set_num_threads(threads)
    model = build_model("cnn", len(data.classes), data.size)
    memory = torch.channels_last if channels_last else torch.preserve_format
    model.to(memory_format=memory).train()
    if compile_model:
        model = torch.compile(model)
    options = FitOptions(channels_last=channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = torch.Generator().manual_seed(0)
    rows = torch.randperm(len(data), generator=rng)

    def step(i):
        batch = rows[i * 128:(i + 1) * 128]
        train_step(model, optimizer, loss_fn, data.images[batch], data.labels[batch], options,
                   len(data.classes), rng)

    for i in range(5):
        step(i)
    start = time.perf_counter()
    for i in range(5, 45):
        step(i)
    return 40 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-real"))
    parser.add_argument("--epochs", type=int, default=JudgeConfig().epochs)
    parser.add_argument("--minutes", type=float, default=JudgeConfig().max_minutes)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--baseline", action="store_true",
                        help="also train without class weighting (another --minutes)")
    args = parser.parse_args()
    layout, seconds = real_pipeline(args.work, ["face_index", "splits"])
    print("pipeline:", {k: round(v, 1) for k, v in seconds.items()})
    data = split_faces(layout, "fer7")
    print("faces:", {s: len(d) for s, d in data.items()})
    results: dict = {"faces": {s: len(d) for s, d in data.items()}}

    if not args.skip_speed:
        speed = {}
        for threads, channels_last, compiled in [(2, True, False), (2, False, False),
                                                 (1, True, False), (2, True, True)]:
            name = f"threads={threads} channels_last={channels_last} compile={compiled}"
            speed[name] = round(steps_per_second(data["train"], threads, channels_last,
                                                 compiled), 2)
            print(f"{name}: {speed[name]} steps/s "
                  f"({speed[name] / next(iter(speed.values())):.2f}x the default)", flush=True)
        results["steps_per_second"] = speed
        torch.set_num_threads(2)

    start = time.perf_counter()
    layout, _ = real_pipeline(args.work, ["expression_judge"], {"expression_judge": {
        "config": {"epochs": args.epochs, "max_minutes": args.minutes}}})
    print(f"expression_judge asset: {time.perf_counter() - start:.0f} s")
    runs = {"judge (class-weighted)": json.loads((judge_dir(layout) / "metrics.json").read_text())}
    if args.baseline:
        options = FitOptions(**{**runs["judge (class-weighted)"]["options"],
                                "class_weighted": False})
        result = train_judge(data, args.work / "bench_judge" / "unweighted", options,
                             log=lambda m: print("  " + m, flush=True))
        runs["baseline (unweighted)"] = {**result.test, "history": result.history}
    for name, test in runs.items():
        disgust = test["per_class"]["disgust"]
        results[name] = {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
                         "disgust_recall": disgust["recall"], "disgust_f1": disgust["f1"],
                         "minutes": round(test["seconds"] / 60, 1),
                         "best_epoch": test["best_epoch"], "curve": test["history"]}
        print(f"{name}: test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}, "
              f"disgust recall {disgust['recall']:.3f}, {test['seconds'] / 60:.1f} min, best "
              f"epoch {test['best_epoch']}", flush=True)
        print("  minutes -> val accuracy: " + ", ".join(
            f"{h['minutes']:.1f}: {h['val_accuracy']:.3f}" for h in test["history"]))
    out = REPO / "bench" / "results" / "judge.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print("wrote", out)


if __name__ == "__main__":
    main()
