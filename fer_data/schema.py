"""The Parquet schemas of every table the pipeline writes, in pipeline order, and the one helper
that builds reject rows. Imported everywhere; defined once.

    raw_images   RAW_IMAGE   one row per source image or video frame (ingest)
    face_crops   FACE        one row per face, with its de-duplication keys (faces)
    face_index   INDEX       every face, its cluster, kept or dropped and why (dedup)
    splits       SPLIT       train/val/test of every kept face (splits)
    label_issues LABEL_ISSUES every training face's label audit (label_audit)
    synthetic    SYNTHETIC   generated faces that passed the gate (augment)
    curated      CURATED     the published rows that training code reads (publish)
    rejects      REJECT      every input a stage did not turn into a row, with the reason
"""

from __future__ import annotations

from typing import Iterable

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
        # where the dataset says the face is (readers.base.GivenFace), in the original file's
        # pixels; null where the faces stage detects it
        pa.field("given_face", pa.struct([
            pa.field("box", pa.list_(pa.float32(), 4)),
            pa.field("eyes", pa.list_(pa.float32(), 4)),  # left x, y, right x, y
            pa.field("score", pa.float32()),
            pa.field("whole_image", pa.bool_()),
            pa.field("offset", pa.list_(pa.int32(), 2)),  # the stored image's corner in the file
        ])),
        pa.field("valence", pa.float32()),  # AffectNet's continuous labels, -1..1
        pa.field("arousal", pa.float32()),
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


def reject_table(rows: Iterable[dict] = ()) -> pa.Table:
    """Reject rows (dataset, source_path, stage, reason, detail) as a REJECT table."""
    return pa.Table.from_pylist(list(rows), schema=REJECT)

# A face crop: the raw record's identity and labels (without the full source image), plus the
# crop and how it was found.
FACE = pa.schema(
    [field for field in RAW_IMAGE if field.name not in ("image", "given_face")]
    + [
        pa.field("face", pa.binary(), nullable=False),  # gray PNG, face_size x face_size
        pa.field("face_size", pa.int32(), nullable=False),
        pa.field("bbox", pa.list_(pa.float32(), 4)),  # x1, y1, x2, y2 in source pixels
        pa.field("landmarks", pa.list_(pa.float32())),  # x, y pairs; MTCNN: 5 points
        pa.field("detector", pa.string(), nullable=False),
        pa.field("det_score", pa.float32()),
        pa.field("n_faces", pa.int32()),
        pa.field("face_found", pa.bool_()),  # for already-cropped faces: a quality flag
        # of the crop, outside its most varied straight band (dedup.pixel_std): near-uniform
        # faces, and a line of text on a blank picture, are low_information
        pa.field("pixel_std", pa.float32(), nullable=False),
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

# the de-duplication keys as face_index keeps them (the thumbnails stay in face_crops)
_INDEX_KEYS = [FACE.field(n) for n in ("phash", "phash_mirror", "source_phash",
                                       "source_phash_mirror", "source_phash_eq",
                                       "source_phash_eq_mirror", "source_digest")]

INDEX = pa.schema(
    [FACE.field(n) for n in ("image_id", "dataset", "source_path", "label", "subject_id",
                             "official_split")]
    + _INDEX_KEYS
    + [
        FACE.field("pixel_std"),
        pa.field("cluster_id", pa.int64(), nullable=False),  # faces that are one picture
        pa.field("cluster_size", pa.int64(), nullable=False),
        pa.field("keep", pa.bool_(), nullable=False),  # the cluster's representative
        pa.field("drop_reason", pa.string()),  # duplicate, label_conflict, low_information, ...
        pa.field("drop_detail", pa.string()),
        pa.field("duplicate_of", pa.string()),  # the kept face's image_id
    ]
)

# The duplicate edges face_index found between two faces it KEPT (fer_data.dedup.kept_pairs): in
# a correct index none, but one person's posed expressions; splits checks that none crosses splits.
KEPT_PAIRS = pa.schema([
    pa.field("image_id_a", pa.string(), nullable=False),
    pa.field("image_id_b", pa.string(), nullable=False),
    pa.field("key", pa.string(), nullable=False),  # the key that found it (duplicate_pairs)
])

SPLIT = pa.schema([
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("subject_id", pa.string()),
    pa.field("split", pa.string(), nullable=False),
    pa.field("split_rule", pa.string(), nullable=False),  # official, subject or stratified
])

# The label audit of one training face (fer_data.label_audit).
LABEL_ISSUES = pa.schema([
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),  # as given, in the audited class set
    pa.field("suggested_label", pa.string(), nullable=False),  # the most probable class
    # out-of-fold probability of the given label: low = suspect
    pa.field("label_quality", pa.float32(), nullable=False),
    pa.field("suggested_probability", pa.float32(), nullable=False),
    pa.field("flagged", pa.bool_(), nullable=False),  # cleanlab's find_label_issues
    pa.field("fold", pa.int32(), nullable=False),
])

# Synthetic faces: the publish columns of a real face, plus where they came from.
SYNTHETIC = pa.schema([
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),  # always train
    pa.field("dataset", pa.string(), nullable=False),  # "stargan"
    pa.field("source_path", pa.string()),  # the source face's original file
    pa.field("label", pa.string(), nullable=False),  # the target class
    pa.field("subject_id", pa.string()),
    pa.field("face", pa.binary(), nullable=False),
    pa.field("is_synthetic", pa.bool_(), nullable=False),
    pa.field("source_image_id", pa.string(), nullable=False),
    pa.field("generator", pa.string(), nullable=False),  # checkpoint sha256, step, seed
    pa.field("phash", pa.int64(), nullable=False),
    pa.field("target_probability", pa.float32(), nullable=False),  # the judge's
])

# A published row: what CuratedFaces, pandas, DuckDB and Hugging Face `datasets` read.
CURATED = pa.schema([
    pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
    pa.field("label", pa.int64()),
    pa.field("label_name", pa.string()),
    pa.field("split", pa.string()),
    pa.field("source_dataset", pa.string()),
    # the original file, relative to its dataset folder (a synthetic row: its source face's)
    pa.field("source_path", pa.string()),
    pa.field("subject_id", pa.string()),
    pa.field("is_synthetic", pa.bool_()),
    pa.field("source_image_id", pa.string()),
    pa.field("generator", pa.string()),
    pa.field("image_id", pa.string()),
    # the face's box in the original file's pixels (x1, y1, x2, y2; a synthetic row: null)
    pa.field("bbox", pa.list_(pa.float32(), 4)),
    pa.field("valence", pa.float32()),  # AffectNet's continuous labels; null elsewhere
    pa.field("arousal", pa.float32()),
    # the label audit's trust in the label (label_issues; null outside the training split and
    # for synthetic rows)
    pa.field("label_quality", pa.float32()),
    pa.field("label_flagged", pa.bool_()),  # the audit's verdict: the label is probably wrong
])


def hf_features(names: tuple[str, ...]) -> dict:
    """The `huggingface` schema metadata that makes `datasets` load CURATED's image column as
    Image and its label as a ClassLabel with these names."""
    value = {"dtype": "string", "_type": "Value"}
    features = {field.name: value for field in CURATED}
    features.update(image={"_type": "Image"},
                    label={"names": list(names), "_type": "ClassLabel"},
                    is_synthetic={"dtype": "bool", "_type": "Value"},
                    bbox={"feature": {"dtype": "float32", "_type": "Value"}, "length": 4,
                          "_type": "Sequence"},
                    valence={"dtype": "float32", "_type": "Value"},
                    arousal={"dtype": "float32", "_type": "Value"},
                    label_quality={"dtype": "float32", "_type": "Value"},
                    label_flagged={"dtype": "bool", "_type": "Value"})
    return {"info": {"features": features}}
