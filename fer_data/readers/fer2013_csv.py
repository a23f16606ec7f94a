"""FER2013 as a CSV of pixel strings: `fer2013.csv` (`emotion,pixels,Usage`), the Kaggle
`icml_face_data.csv` (headers with leading spaces), or the challenge's `train.csv`/`test.csv`.
When FER+'s `fer2013new.csv` sits beside it, its votes are attached row by row."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from fer_data.images import encode_png
from fer_data.labels import FER2013_INDEX, FERPLUS_COLUMNS
from fer_data.readers.base import SPLIT_SYNONYMS, ReadOptions, Record, Reject, Scan, relpath

SIDE = 48
USAGE_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
# In order of preference: each later file repackages (part of) the first.
VARIANTS = ("fer2013.csv", "icml_face_data.csv", "train.csv")
FERPLUS_FILE = "fer2013new.csv"


def find_csvs(root: Path) -> list[Path]:
    """The FER2013 CSV(s) to read: the first variant found at the top or one level down
    (test.csv comes with train.csv)."""
    for name in VARIANTS:
        for candidate in [root / name, *sorted(root.glob(f"*/{name}"))]:
            if candidate.is_file():
                extra = candidate.with_name("test.csv") if name == "train.csv" else None
                return [candidate] + ([extra] if extra and extra.is_file() else [])
    return []


def read_fer_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """One variant's header, normalised (`' pixels'` -> `pixels`), and its rows as read: a row
    with too few or too many fields stays a row (it becomes a reject, not a parser error)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "pixels" not in header:
        raise ValueError(f"{path} has no 'pixels' column (columns: {header})")
    return header, rows[1:]


def official_split(usage: str, has_usage: bool, default: str | None) -> str | None:
    """FER2013's Usage as a split: Training/PublicTest/PrivateTest as published, the usual
    synonyms too (Validation -> val, Test -> test); None when unknown (the caller rejects it).
    A file without a Usage column (the challenge's train.csv) gets `default`."""
    if not has_usage:
        return default
    return USAGE_SPLIT.get(usage) or SPLIT_SYNONYMS.get(usage.lower())


def parse_pixels(text: str) -> np.ndarray:
    """A 2304-integer pixel string to a 48x48 uint8 image; ValueError with a reason otherwise."""
    parts = text.split()
    if len(parts) != SIDE * SIDE:
        raise ValueError(f"bad_pixel_count: {len(parts)} values, expected {SIDE * SIDE}")
    try:
        values = np.array(parts, dtype=np.int64)
    except ValueError as exc:
        raise ValueError(f"bad_pixels: {exc}") from None
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"bad_pixels: values outside 0..255 ({values.min()}..{values.max()})")
    return values.astype(np.uint8).reshape(SIDE, SIDE)


def ferplus_label(votes: dict[str, int]) -> tuple[str | None, str]:
    """Majority label from FER+ votes, or (None, reason) when there is none."""
    if not any(votes.values()):
        return None, "ferplus_not_rated"
    top = max(votes.values())
    winners = [name for name, count in votes.items() if count == top]
    if len(winners) > 1:
        return None, "ferplus_tie"
    if FERPLUS_COLUMNS[winners[0]] is None:
        return None, "ferplus_not_face" if winners[0] == "NF" else "ferplus_unknown"
    return FERPLUS_COLUMNS[winners[0]], ""


@dataclass
class Fer2013CsvReader:
    name: str = "fer2013_csv"
    layout: str = "fer2013.csv (emotion,pixels,Usage), icml_face_data.csv, or train.csv/test.csv"

    def detect(self, root: Path) -> bool:
        return bool(find_csvs(root))

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan:
        tables = [(path, read_fer_csv(path)) for path in find_csvs(root)]
        votes = self._ferplus(tables[0][0], len(tables[0][1][1]))
        inputs = [f"{relpath(p, root)}:{i + 2}" for p, (_, rows) in tables
                  for i in range(len(rows))]
        consumed = [relpath(p, root) for p, _ in tables]
        if votes is not None:
            consumed.append(relpath(tables[0][0].with_name(FERPLUS_FILE), root))

        def outcomes() -> Iterator[Record | Reject]:
            for table_index, (path, (header, rows)) in enumerate(tables):
                default_split = "train" if path.name == "train.csv" else None
                row_votes = votes if table_index == 0 else None
                for i, values in enumerate(rows):
                    key = f"{relpath(path, root)}:{i + 2}"  # line number in the file
                    if len(values) != len(header):
                        yield Reject(dataset, key, "short_row" if len(values) < len(header)
                                     else "long_row", f"{len(values)} fields, the header has "
                                     f"{len(header)} ({', '.join(header)})")
                        continue
                    yield self._row(dict(zip(header, values, strict=True)), key, dataset,
                                    "usage" in header, default_split,
                                    None if row_votes is None else row_votes[i], options)

        return Scan(inputs, outcomes(), consumed)

    def _ferplus(self, csv_path: Path, n_rows: int) -> list[dict[str, int]] | None:
        path = csv_path.with_name(FERPLUS_FILE)
        if not path.is_file():
            return None
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        table.columns = [c.strip() for c in table.columns]
        if len(table) != n_rows:
            raise ValueError(
                f"{path} has {len(table)} rows but {csv_path.name} has {n_rows}: FER+ votes "
                "align row by row with the original fer2013.csv; remove one of them"
            )
        columns = [c for c in FERPLUS_COLUMNS if c in table.columns]
        counts = table[columns].replace("", "0").astype(int)
        return counts.to_dict("records")

    def _row(self, row, key, dataset, has_usage, default_split, votes,
             options) -> Record | Reject:
        emotion = row.get("emotion", "").strip()
        if emotion == "":
            return Reject(dataset, key, "unlabeled", "row has no emotion value (test.csv rows "
                          "are unlabeled; fer2013.csv has them with labels)")
        try:
            label = FER2013_INDEX[int(emotion)]
        except (ValueError, KeyError):
            return Reject(dataset, key, "unknown_label", f"emotion {emotion!r} is not 0..6")
        try:
            pixels = parse_pixels(row["pixels"])
        except ValueError as exc:
            reason, _, detail = str(exc).partition(": ")
            return Reject(dataset, key, reason, detail)
        attributes = {}
        if votes is not None:
            attributes["ferplus_votes"] = votes
            if options.ferplus_labels:
                plus, why = ferplus_label(votes)
                if plus is None:
                    return Reject(dataset, key, why, f"FER+ votes {votes}")
                attributes["fer2013_label"] = label
                label = plus
        usage = row.get("usage", "").strip()
        split = official_split(usage, has_usage, default_split)
        if split is None:
            return Reject(dataset, key, "unknown_split", f"Usage {usage!r}: expected Training, "
                          "PublicTest or PrivateTest (or train/val/test)")
        return Record(
            dataset=dataset,
            source_path=key,
            label=label,
            original_label=emotion,
            image=encode_png(pixels),
            width=SIDE,
            height=SIDE,
            official_split=split,
            attributes=attributes,
        )
