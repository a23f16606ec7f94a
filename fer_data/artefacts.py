"""Where the pipeline's tables live, and the loaders that several stages share."""

from __future__ import annotations

import pyarrow as pa

from fer_data import storage
from fer_data.datasets import DATASETS


def load_face_crops(layout: storage.StorageLayout,
                    columns: list[str] | None = None) -> tuple[pa.Table, list[str]]:
    """Every face_crops partition that exists, concatenated; and the datasets found."""
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
