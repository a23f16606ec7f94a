"""Does synthetic disgust help, and does dropping doubtful labels? Six training variants x
seeds on the real, leak-free test split, one result file per run, resumable.

    .venv/bin/python bench/augmentation.py [--work /tmp/fer-real] [--model cnn] [--seeds 0 1 2]
                                           [--max-runs 0] [--device cpu] [--report-only]

Needs curated/fer7 in --work with synthetic rows (bench/synthetic.py makes it: the real FER2013
image export + CK+48 through the pipeline, the `cpu` StarGAN profile, the judge's gate). Each
run trains one classifier (`python -m fer_data.evaluate`) with a fixed seed, keeps the best
epoch on the real validation split and is scored on the real test split:

    plain             real faces only
    class_weighted    real faces, inverse-frequency loss weights
    oversampled       real faces, disgust drawn as often as fear has rows (+ flips/affine)
    stargan           real faces + the StarGAN top-up of disgust to the fear count
    stargan_weighted  the top-up + inverse-frequency loss weights
    stargan_oversampled  the top-up + oversampling: disgust drawn as often as fear has rows,
                      half of the draws real faces, half synthetic
    audited           real faces without the training rows the label audit flagged
                      (needs label_issues materialized before curated_dataset)

Results: bench/results/augmentation/<model>_<variant>_seed<k>.json (skipped when present, so
an interrupted grid continues where it stopped; a stargan variant's runs again when its synthetic
rows came from another generator), then report.md (mean ± std over seeds) and disgust_f1.png.
On a CUDA machine: --device cuda --model vit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import REPO

from fer_data.evaluate import (
    VARIANTS,
    run_experiment,
    summary_table,
    target_f1_png,
    training_rows_table,
)

RESULTS = REPO / "bench" / "results" / "augmentation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-real"))
    parser.add_argument("--model", default="cnn", choices=["cnn", "vit"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=0, help="0: the model's default")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="cut a run after this long (0: none; the budget is the epoch "
                        "count, 10 for the CNN = about 14.5 minutes on 2 idle cores, so results "
                        "do not depend on how busy the machine is)")
    parser.add_argument("--max-runs", type=int, default=0, help="stop after this many new runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where the result files and the report go (a grid on other "
                        "data, e.g. after de-duplication changed the splits, wants its own)")
    args = parser.parse_args()
    records = run_experiment(
        args.work / "curated" / "fer7", args.results, args.work / "augmentation", "disgust",
        "fear",
        args.model,
        args.variants, tuple(args.seeds), -1 if args.report_only else args.max_runs,
        log=lambda m: print(m, flush=True), epochs=args.epochs, max_minutes=args.max_minutes,
        device=args.device)
    if not records:
        print("no results yet")
        return
    table = summary_table(records, "disgust") + "\n\n" + training_rows_table(records)
    (args.results / "report.md").write_text(table + "\n")
    (args.results / "disgust_f1.png").write_bytes(target_f1_png(records, "disgust"))
    print(table)


if __name__ == "__main__":
    main()
