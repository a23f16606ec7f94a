"""Gathering the per-dataset face tables into one, and the rows a curated dataset is built from.
Plain functions over the storage layout, used by the curate and publish assets."""

from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow as pa

from fer_data import storage
from fer_data.dedup import KEY_COLUMNS
from fer_data.readers import DATASETS
from fer_data.storage import StorageLayout

INDEX_COLUMNS = ["image_id", "dataset", "source_path", "label", "subject_id", "official_split",
                 "pixel_std", *KEY_COLUMNS]
PUBLISH_COLUMNS = ["image_id", "dataset", "source_path", "label", "subject_id", "face"]


def load_faces(layout: StorageLayout,
               columns: list[str] | None = None) -> tuple[pa.Table, list[str]]:
    """All face_crops partitions that exist, concatenated; and the datasets found."""
    tables, found = [], []
    for dataset in DATASETS:
        path = layout.table("face_crops", dataset)
        if path.exists():
            tables.append(storage.read_table(path, columns=columns))
            found.append(dataset)
    if not tables:
        raise FileNotFoundError(f"no face_crops tables under {layout.storage_dir}: materialize "
                                "raw_images and face_crops first")
    return pa.concat_tables(tables), found


def publish_rows(faces: pa.Table, splits: pa.Table, synthetic: pa.Table | None = None) -> pa.Table:
    """Kept real faces with their split, plus synthetic rows (training split only)."""
    real = splits.select(["image_id", "split"]).join(
        faces.select(PUBLISH_COLUMNS), "image_id")
    real = real.append_column("is_synthetic", pa.array([False] * real.num_rows))
    real = real.append_column("source_image_id", pa.nulls(real.num_rows, pa.string()))
    real = real.append_column("generator", pa.nulls(real.num_rows, pa.string()))
    if synthetic is None or synthetic.num_rows == 0:
        return real
    extra = synthetic.select(real.column_names)
    if set(extra.column("split").to_pylist()) - {"train"}:
        raise ValueError("synthetic faces may only join the training split")
    return pa.concat_tables([real, extra.cast(real.schema)])


def counts_by_source(rows: pa.Table) -> dict[str, dict[str, int]]:
    out: dict[str, Counter] = defaultdict(Counter)
    for dataset, split in zip(rows.column("dataset").to_pylist(),
                              rows.column("split").to_pylist(), strict=True):
        out[dataset][split] += 1
    return {k: dict(v) for k, v in out.items()}
