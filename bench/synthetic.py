"""Synthetic disgust on real faces: the `cpu` StarGAN profile trained, judged and gated on the
real FER2013 image export + CK+48, with the time of every phase.

    .venv/bin/python bench/synthetic.py [--work /tmp/fer-real] [--profile cpu]
                                        [--max-minutes 0]

Runs (through Dagster, reusing what --work already holds: run bench/judge.py first for the
judge) face_index, splits, expression_judge (only if missing), stargan_model, synthetic_faces
and curated_dataset, then prints the quality report: the judge's hit rate per target class,
its recall on real disgust test faces, SSIM to source, Frechet distances in the judge's feature
space, the gate's pass rate, and the hit rate at every checkpoint against training minutes.
The report, grid and curve are copied to bench/results/synthetic/. Interrupted, it resumes from
the last checkpoint (stargan_model resumes; the other steps are minutes).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import REPO, real_pipeline

from fer_data.artefacts import judge_dir
from fer_data.augment import read_model_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-real"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="train at most this long in this call (resume with another)")
    args = parser.parse_args()
    layout, _ = real_pipeline(args.work, [])
    steps = [] if (judge_dir(layout) / "judge.pt").exists() else ["expression_judge"]
    steps += ["stargan_model", "synthetic_faces", "curated_dataset"]
    config = {"stargan_model": {"config": {"profile": args.profile,
                                           "max_minutes": args.max_minutes}}}
    layout, seconds = real_pipeline(args.work, ["face_index", "splits", *steps], config)
    report = json.loads(Path(read_model_record(layout)["report"]).read_text())
    print("\nseconds per phase:")
    for name, value in seconds.items():
        print(f"  {name:40s} {value:8.1f}")
    print(f"\nprofile {report['profile']}, step {report['step']}, "
          f"{report['training_minutes']} training minutes")
    print(f"judge hit rate (disgust)          {report['judge_hit_rate']:.3f}")
    print(f"judge recall on real disgust test {report['judge_real_recall']:.3f}")
    print(f"SSIM to source                    {report['ssim_to_source']:.3f}")
    print(f"gate pass rate                    {report.get('gate_pass_rate', float('nan')):.3f} "
          f"({report.get('gate_accepted')} of {report.get('gate_needed')} needed in "
          f"{report.get('gate_attempts')} attempts; rejects {report.get('gate_rejects')})")
    eyes = report.get("eyes_found", {})
    print(f"both eyes found (eye cascade)      {eyes.get('synthetic')} of synthetic faces, "
          f"{eyes.get('their_sources')} of their sources ({eyes.get('pairs')} pairs)")
    for name, value in report["frechet_judge_features"].items():
        print(f"Frechet {name:34s} {value:.2f}")
    print("hit rate by target class: " + ", ".join(
        f"{k} {v['hit_rate']:.2f} (SSIM {v['ssim_to_source']:.2f})"
        for k, v in report["by_target_class"].items()))
    print("checkpoints (minutes: hit rate / SSIM): " + ", ".join(
        f"{c['seconds'] / 60:.0f}: {c['judge_hit_rate']:.2f}/{c['ssim_to_source']:.2f}"
        for c in report["curve"]))
    out = REPO / "bench" / "results" / "synthetic"
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(report["checkpoint"]).parent
    for name in ("synthetic_report.json", "translation_grid.png", "judge_hit_rate.png",
                 "loss_curves.png"):
        shutil.copy(folder / name, out / name)
    (out / "seconds.json").write_text(json.dumps(seconds, indent=2))
    print("wrote", out)


if __name__ == "__main__":
    main()
