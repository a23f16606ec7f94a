"""Where the pipeline's tables live, and the loaders that several stages share."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from fer_data import storage
from fer_data.classifier import FaceTensors, from_pngs
from fer_data.datasets import DATASETS
from fer_data.labels import class_names, map_label
from fer_data.schema import SPLITS
from fer_data.storage import StorageLayout

REPORT = "synthetic_report.json"  # the generator's quality report, and synthetic_faces' copy


def local_dir(root, what: str) -> Path:
    """A storage root as a local folder, for artefacts written with torch.save; an fsspec root
    (s3://...) gets a clear error instead of a local folder named "s3:"."""
    if not storage.is_local(root):
        raise ValueError(f"{what} needs a local storage root (torch.save), not {root}: set "
                         "FER_STORAGE_DIR to a local folder or a shared volume")
    return Path(str(root))


def judge_dir(layout: StorageLayout) -> Path:
    """expression_judge: judge.pt, metrics.json, confusion_matrix.png."""
    return local_dir(layout.storage_dir, "the expression judge") / "expression_judge"


def stargan_dir(layout: StorageLayout) -> Path:
    """stargan_model: model.json (the current generator) and a folder per profile with its
    checkpoints, report and figures."""
    return local_dir(layout.storage_dir, "StarGAN") / "stargan_model"


# face_index writes its kept pairs first and the index last, both stamped with the pairs'
# digest under this Parquet key: splits refuses pairs from another run (one killed between)
INDEX_RUN = "fer_data_run.kept_pairs"


def kept_pairs_path(layout: StorageLayout):
    """face_index's second table: the duplicate edges between two kept faces (schema.KEPT_PAIRS),
    which splits checks for leaks."""
    return layout.table("face_index", "kept_pairs")


def write_kept_pairs(layout: StorageLayout, pairs: pa.Table) -> dict[str, str]:
    """Write face_index's kept pairs, stamped; the stamp returned goes into the index's
    metadata, which is written after them."""
    stamp = {INDEX_RUN: hashlib.sha256(json.dumps(pairs.to_pydict()).encode()).hexdigest()}
    storage.write_table(pairs, kept_pairs_path(layout), stamp)
    return stamp


def read_kept_pairs(layout: StorageLayout, index_schema: pa.Schema) -> pa.Table:
    """The kept pairs of the face_index run whose table has `index_schema`; a clear error when
    they come from another run."""
    pairs = storage.read_table(kept_pairs_path(layout))
    token = (index_schema.metadata or {}).get(INDEX_RUN.encode())
    if token is None or (pairs.schema.metadata or {}).get(INDEX_RUN.encode()) != token:
        raise ValueError(f"{kept_pairs_path(layout)} is not from the face_index run that wrote "
                         "the index (a run stopped between the two writes?): materialize "
                         "face_index again")
    return pairs


def synthetic_report_path(layout: StorageLayout):
    """synthetic_faces' copy of the generator's report, with what the gate published."""
    return layout.storage_dir / "synthetic_faces" / REPORT


def experiment_dir(layout: StorageLayout) -> Path:
    """augmentation_experiment: results/ (one JSON per run) and runs/ (their folders)."""
    return local_dir(layout.storage_dir, "the augmentation experiment") / \
        "augmentation_experiment"


def published_dir(layout: StorageLayout, class_set: str):
    """A published (curated) dataset: <curated>/<class_set>/{train,val,test}.parquet."""
    return layout.curated_dir / class_set


def load_face_crops(layout: StorageLayout,
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


def training_split(faces: pa.Table, splits: pa.Table,
                   class_set: str) -> tuple[pa.Table, FaceTensors]:
    """The training split's rows of `faces` (which needs image_id, label and face), sorted by
    image_id, labels mapped into the class set (rows outside it left out, `label` replaced by
    the class name), and their faces decoded."""
    classes = class_names(class_set)
    train = splits.filter(pc.equal(splits["split"], "train")).select(["image_id"])
    rows = train.join(faces, "image_id").sort_by("image_id")
    mapped = [map_label(label, class_set) for label in rows["label"].to_pylist()]
    rows = rows.filter(pa.array([m is not None for m in mapped]))
    rows = rows.set_column(rows.schema.get_field_index("label"), "label",
                           pa.array([m for m in mapped if m is not None]))
    return rows, from_pngs(rows["face"].to_pylist(),
                           [classes.index(x) for x in rows["label"].to_pylist()], classes)


def split_faces(layout: StorageLayout, class_set: str) -> dict[str, FaceTensors]:
    """The real faces of every split, labels mapped into the class set, from the face_crops and
    splits tables (no synthetic rows: they do not exist yet when the judge trains)."""
    classes = class_names(class_set)
    splits = storage.read_table(layout.table("splits", storage.ALL),
                                columns=["image_id", "split"])
    faces, _ = load_face_crops(layout, ["image_id", "label", "face"])
    rows = splits.join(faces, "image_id").sort_by("image_id")
    out = {}
    for split in SPLITS:
        part = rows.filter(pc.equal(rows["split"], split))
        mapped = [map_label(x, class_set) for x in part["label"].to_pylist()]
        keep = [i for i, m in enumerate(mapped) if m is not None]
        pngs = part["face"].to_pylist()
        out[split] = from_pngs([pngs[i] for i in keep],
                               [classes.index(mapped[i]) for i in keep], classes)
    return out
