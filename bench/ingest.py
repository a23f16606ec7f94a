"""Ingest throughput on the real FER2013 image folders, beside a naive baseline in the same run.

    python bench/ingest.py [--data ../shared/datasets/fer2013_images] [--baseline-limit N]

The baseline is the loop people write first: PIL open, re-encode to PNG, append a row to a
pandas DataFrame. Peak memory is the process's max RSS (Linux).
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from fer_data.ingest import ingest_dataset  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "fer2013_images"


def baseline(files: list[Path]) -> float:
    frame = pd.DataFrame(columns=["path", "label", "image"])
    start = time.perf_counter()
    for path in files:
        buf = io.BytesIO()
        with Image.open(path) as im:
            im.save(buf, format="PNG")
        frame.loc[len(frame)] = [str(path), path.parent.name, buf.getvalue()]
    return time.perf_counter() - start


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--baseline-limit", type=int, default=0,
                        help="time the baseline on the first N files only (0 = all)")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data}")
    with tempfile.TemporaryDirectory() as tmp:  # raw/<dataset> is how the pipeline sees it
        (Path(tmp) / "fer2013").symlink_to(args.data.resolve())
        start = time.perf_counter()
        result = ingest_dataset(Path(tmp), "fer2013")
        ours = time.perf_counter() - start
    ours_peak = peak_mb()
    n = result.inputs
    files = sorted(args.data.rglob("*.jpg"))
    sample = files[: args.baseline_limit] if args.baseline_limit else files
    base = baseline(sample)
    base_rate, our_rate = len(sample) / base, n / ours
    print(f"data: {args.data} ({n:,} files; {result.records.num_rows:,} records, "
          f"{result.rejects.num_rows:,} rejects)")
    print(f"{'':24}{'files':>8}{'seconds':>10}{'images/s':>11}")
    print(f"{'fer-data ingest':24}{n:>8,}{ours:>10.2f}{our_rate:>11,.0f}")
    print(f"{'naive baseline':24}{len(sample):>8,}{base:>10.2f}{base_rate:>11,.0f}")
    print(f"speed-up: {our_rate / base_rate:.1f}x   peak RSS after ingest: {ours_peak:,.0f} MB, "
          f"after baseline: {peak_mb():,.0f} MB")


if __name__ == "__main__":
    main()
