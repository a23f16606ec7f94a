"""Every StarGAN try side by side: the judge's disgust hit rate against SSIM to source and
against training minutes at each checkpoint, with the issue's targets (hit rate >= the judge's
recall on real disgust test faces, SSIM >= 0.5, 45 minutes), read from the checkpoints' own
histories.

    .venv/bin/python bench/synthetic_tries.py --try NAME=CHECKPOINT_DIR [--try ...] [--bar B]

Each --try is a name and a folder holding a `checkpoint.pt` that bench/synthetic.py trained
(its history has the judge's figures at every checkpoint). The figures of every try named go
into bench/results/synthetic/tries.json (tries named before are kept, so the comparison grows
over sessions without the checkpoints), then the table is printed and tries.png drawn. The bar
defaults to `judge_real_recall` of the adopted generator's report (bench/synthetic.py's copy).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import REPO

from fer_data.figures import figure_png, pyplot
from fer_data.storage import atomic_write_bytes
from stargan.train import load_checkpoint

RESULTS = REPO / "bench" / "results" / "synthetic"
SSIM_TARGET = 0.5
BUDGET_MINUTES = 45  # the cpu profile's training budget (issue 13)


def read_try(folder: Path) -> dict:
    """The try's training config and the judge's figures at each of its checkpoints."""
    state = load_checkpoint(folder / "checkpoint.pt")
    points = [{"step": h["step"], "minutes": round(h["seconds"] / 60, 1),
               "judge_hit_rate": h["judge_hit_rate"], "ssim_to_source": h["ssim_to_source"]}
              for h in state["history"] if "judge_hit_rate" in h]
    return {"config": {k: v for k, v in state["config"].items() if k != "domains"},
            "points": points}


def summary(name: str, points: list[dict], bar: float) -> str:
    best = max(points, key=lambda p: p["judge_hit_rate"])
    ok = [p for p in points if p["ssim_to_source"] >= SSIM_TARGET]
    best_ok = max(ok, key=lambda p: p["judge_hit_rate"]) if ok else None
    met = [p["step"] for p in ok if p["judge_hit_rate"] >= bar]
    return (f"{name:28s} {points[-1]['step']:6d} {best['judge_hit_rate']:8.3f} "
            f"{best['ssim_to_source']:6.3f} "
            + (f"{best_ok['judge_hit_rate']:14.3f} @{best_ok['step']:<5d}" if best_ok
               else f"{'-':>14s}       ")
            + f"  {met or 'never'}")


def tries_png(tries: dict[str, dict], bar: float) -> bytes:
    """Left: hit rate against SSIM (the targets shaded); right: hit rate against training
    minutes (the 45-minute budget marked), a point per checkpoint."""
    fig, (ax, by_time) = pyplot().subplots(1, 2, figsize=(11, 4.5), dpi=100)
    ax.axvline(SSIM_TARGET, color="0.5", lw=0.8, ls="--")
    ax.fill_between([SSIM_TARGET, 1], bar, 1, color="tab:green", alpha=0.12, label="the targets")
    by_time.axvline(BUDGET_MINUTES, color="0.5", lw=0.8, ls="--")
    for name, run in tries.items():
        xs = [p["ssim_to_source"] for p in run["points"]]
        ys = [p["judge_hit_rate"] for p in run["points"]]
        line, = ax.plot(xs, ys, marker="o", ms=3, lw=0.8, label=name)
        ax.annotate(str(run["points"][-1]["step"]), (xs[-1], ys[-1]), fontsize=6,
                    color=line.get_color())
        by_time.plot([p["minutes"] for p in run["points"]], ys, marker="o", ms=3, lw=0.8,
                     color=line.get_color())
    for axis in (ax, by_time):
        axis.axhline(bar, color="0.5", lw=0.8, ls="--")
        axis.set_ylabel("judge hit rate (disgust)")
        axis.set_ylim(0, 0.6)
    ax.set_xlabel("SSIM to source")
    ax.set_xlim(0.2, 0.9)
    ax.set_title("StarGAN tries: a point per checkpoint (500 iterations)", fontsize=9)
    ax.legend(fontsize=6, loc="center right")
    by_time.set_xlabel("training minutes (2 CPU cores)")
    by_time.set_title(f"against time; dashed: the {BUDGET_MINUTES}-minute budget, the bar",
                      fontsize=9)
    return figure_png(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--try", dest="tries", action="append", default=[],
                        metavar="NAME=CHECKPOINT_DIR")
    parser.add_argument("--bar", type=float, default=None,
                        help="the judge's recall on real disgust test faces (default: report's)")
    args = parser.parse_args()
    if args.bar is None:
        report = RESULTS / "synthetic_report.json"
        if not report.exists():
            raise SystemExit(f"no {report}: run bench/synthetic.py, or give --bar")
        args.bar = json.loads(report.read_text())["judge_real_recall"]
    path = RESULTS / "tries.json"
    tries = json.loads(path.read_text()) if path.exists() else {}
    for spec in args.tries:
        name, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"--try {spec!r}: expected NAME=CHECKPOINT_DIR")
        tries[name] = read_try(Path(folder))
    if not tries:
        raise SystemExit(f"no tries: name one with --try, or keep {path}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(tries, indent=1).encode())
    atomic_write_bytes(RESULTS / "tries.png", tries_png(tries, args.bar))
    print(f"{'try':28s} {'steps':>6s} {'max hit':>8s} {'SSIM':>6s} "
          f"{'max hit, SSIM>=0.5':>20s}  steps meeting both targets (bar {args.bar:.3f})")
    for name, run in tries.items():
        print(summary(name, run["points"], args.bar))
    print(f"\nwrote {path} and {RESULTS / 'tries.png'}")


if __name__ == "__main__":
    main()
