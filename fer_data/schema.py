"""The Parquet schemas of every table the pipeline writes. Imported everywhere; defined once."""

from __future__ import annotations

import pyarrow as pa

RAW_IMAGE = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32()),
        pa.field("subject_id", pa.string()),
        pa.field("label", pa.string(), nullable=False),
        pa.field("original_label", pa.string()),
        pa.field("official_split", pa.string()),
        pa.field("image", pa.binary(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        # Dataset-specific attributes (pose, intensity, FER+ votes, frame time, ...) as JSON.
        pa.field("attributes", pa.string()),
    ]
)

REJECT = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)

SPLITS: tuple[str, ...] = ("train", "val", "test")
