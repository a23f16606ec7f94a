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

# A face crop: the raw record's identity and labels (without the full source image), plus the
# crop and how it was found.
FACE = pa.schema(
    [field for field in RAW_IMAGE if field.name != "image"]
    + [
        pa.field("face", pa.binary(), nullable=False),  # gray PNG, face_size x face_size
        pa.field("face_size", pa.int32(), nullable=False),
        pa.field("bbox", pa.list_(pa.float32(), 4)),  # x1, y1, x2, y2 in source pixels
        pa.field("landmarks", pa.list_(pa.float32())),  # x, y pairs; MTCNN: 5 points
        pa.field("detector", pa.string(), nullable=False),
        pa.field("det_score", pa.float32()),
        pa.field("n_faces", pa.int32()),
        pa.field("face_found", pa.bool_()),  # for already-cropped faces: a quality flag
        pa.field("pixel_std", pa.float32(), nullable=False),  # of the crop: near-uniform faces
        # de-duplication keys (fer_data.dedup): pHashes of the crop, of the source as stored
        # and of the histogram-equalized source, each also of the mirror image; a digest of the
        # decoded source pixels; a 32x32 equalized thumbnail that verifies wider matches
        pa.field("phash", pa.int64(), nullable=False),
        pa.field("phash_mirror", pa.int64(), nullable=False),
        pa.field("source_phash", pa.int64(), nullable=False),
        pa.field("source_phash_mirror", pa.int64(), nullable=False),
        pa.field("source_phash_eq", pa.int64(), nullable=False),
        pa.field("source_phash_eq_mirror", pa.int64(), nullable=False),
        pa.field("source_digest", pa.string(), nullable=False),
        pa.field("source_thumb", pa.binary(), nullable=False),
    ]
)
