"""Audit a published dataset against its original files, independently of the pipeline's own
hashes: every curated row names its original file (`source_dataset`/`source_path`), which is
hashed here with `imagehash.phash` as stored and histogram-equalized. A training row "leaks"
when a val or test row lies within a few bits of it.

    python -m fer_data.audit curated/fer7 --raw raw/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from fer_data.hash_search import near_pairs
from fer_data.schema import SPLITS


def published_rows(folder: Path, raw_dir: Path, synthetic: bool = False) -> pd.DataFrame:
    """split, source_dataset, source_path and the original file of every (real) row."""
    rows = pd.concat([pd.read_parquet(folder / f"{s}.parquet", columns=[
        "split", "source_dataset", "source_path", "is_synthetic", "image_id"]) for s in SPLITS])
    if not synthetic:
        rows = rows[~rows["is_synthetic"]]
    rows = rows.reset_index(drop=True)
    rows["file"] = [Path(raw_dir) / d / p for d, p in zip(rows["source_dataset"],
                                                          rows["source_path"], strict=True)]
    return rows


def original_hashes(files: list[Path], equalize: bool, mirror: bool = False) -> np.ndarray:
    """imagehash.phash of each file (gray, as PIL converts it), as int64."""
    out = np.empty(len(files), np.int64)
    for i, f in enumerate(files):
        gray = np.asarray(Image.open(f).convert("L"))
        if equalize:
            gray = cv2.equalizeHist(gray)
        if mirror:
            gray = gray[:, ::-1]
        out[i] = np.uint64(int(str(imagehash.phash(Image.fromarray(gray))), 16)).view(np.int64)
    return out


def cross_split_twins(files: list[Path], split: np.ndarray, radii: tuple[int, ...] = (2, 4),
                      mirrors: bool = False) -> dict[int, int]:
    """Training rows with a val or test row within each radius, by the original files' pHash as
    stored or equalized (either one close is enough); with `mirrors`, mirrored copies too."""
    train = np.asarray(split) == "train"
    kinds = [(eq, False) for eq in (False, True)]
    if mirrors:
        kinds += [(eq, True) for eq in (False, True)]
    hashes = {k: original_hashes(files, *k) for k in kinds}
    out = {}
    for radius in radii:
        leaking = np.zeros(len(files), bool)
        for (eq, _), h in hashes.items():
            base = hashes[(eq, False)]
            pairs = near_pairs(h[train], base[~train], radius, same_set=False)
            leaking[np.flatnonzero(train)[pairs[:, 0]]] = True
        out[radius] = int(leaking.sum())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a published class set, e.g. curated/fer7")
    parser.add_argument("--raw", type=Path, default=Path("raw"), help="the raw/ folder")
    args = parser.parse_args(argv)
    rows = published_rows(args.folder, args.raw)
    counts = rows["split"].value_counts().to_dict()
    print(f"{args.folder}: {len(rows):,} real rows {counts}")
    for mirrors in (False, True):
        twins = cross_split_twins(list(rows["file"]), rows["split"].to_numpy(), mirrors=mirrors)
        print(("mirrors too: " if mirrors else "") + ", ".join(
            f"{n:,} training rows with a val/test twin within {r} bits" for r, n in twins.items()))


if __name__ == "__main__":
    main()
