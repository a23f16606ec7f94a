"""The label audit against ground truth, on real data.

    .venv/bin/python bench/label_audit.py [--work /tmp/fer-real] [--flip 0.05] [--epochs 5]

The real FER2013 image export + CK+48 go through the pipeline (raw_images, face_crops,
face_index, splits; reused from an earlier run in --work). Then the audit (the label_issues
asset's function, its default options) runs on a copy of the training split in which a share
of the labels (--flip) was changed on purpose to another class drawn uniformly, plus every
member of the export's byte-identical groups whose copies carry different labels (the
pipeline drops those before splitting, so they are added back here: both sides, each with its
own label; a group's copies share a fold and are each other's rival labels, as face_index's
dropped conflict copies are in the asset). Printed and written to
bench/results/label_audit.json:
- recall and precision of the default flags against the planted flips (the export's own wrong
  labels are flagged too and count against precision here: FER+ re-voted about one label in
  ten), and the precision/recall curve of ranking by label quality, with its best operating
  points;
- how many conflicting byte-identical groups have at least one side flagged;
- minutes, flags per class.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from common import REPO, real_pipeline

from fer_data import storage
from fer_data.artefacts import load_face_crops, training_split
from fer_data.classifier import FaceTensors, from_pngs
from fer_data.label_audit import AuditOptions, audit_labels, precision_recall, rival_labels
from fer_data.labels import class_names, map_label
from fer_data.storage import ALL

RESULT = REPO / "bench" / "results" / "label_audit.json"
COLUMNS = ["image_id", "dataset", "label", "subject_id", "face", "source_digest"]


def conflict_members(faces: pa.Table, classes: tuple[str, ...]) -> pa.Table:
    """Every face of a byte-identical group (same source_digest) whose members carry
    different labels, labels mapped into the class set."""
    digests = faces.column("source_digest").to_pylist()
    labels = [map_label(x, "fer7") for x in faces.column("label").to_pylist()]
    seen: dict[str, set] = {}
    for d, label in zip(digests, labels, strict=True):
        if label is not None:
            seen.setdefault(d, set()).add(label)
    rows = [i for i, (d, label) in enumerate(zip(digests, labels, strict=True))
            if label is not None and len(seen[d]) > 1]
    out = faces.take(pa.array(rows, pa.int64()))
    return out.set_column(out.schema.get_field_index("label"), "label",
                          pa.array([labels[i] for i in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-real"))
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=AuditOptions.epochs)
    parser.add_argument("--folds", type=int, default=AuditOptions.folds)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="audit only this many training "
                        "faces (a quick check of the bench itself)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    layout, _ = real_pipeline(args.work, ["face_index", "splits"])
    classes = class_names("fer7")
    faces, _ = load_face_crops(layout, COLUMNS)
    rows, train = training_split(faces, storage.read_table(layout.table("splits", ALL)), "fer7")
    if args.limit:
        rows, train = rows.slice(0, args.limit), train.subset(np.arange(args.limit))
    conflicts = conflict_members(faces, classes)
    conflicts = conflicts.filter(pc.invert(pc.is_in(conflicts["image_id"], rows["image_id"])))
    extra = from_pngs(conflicts["face"].to_pylist(),
                      [classes.index(x) for x in conflicts["label"].to_pylist()], classes)

    # the planted flips: a share of the training faces, each to another class
    rng = np.random.default_rng(args.seed)
    labels = train.labels.numpy().copy()
    planted = np.zeros(len(labels), bool)
    planted[rng.choice(len(labels), int(round(args.flip * len(labels))), replace=False)] = True
    shift = rng.integers(1, len(classes), planted.sum())
    labels[planted] = (labels[planted] + shift) % len(classes)

    audited = FaceTensors(torch.cat([train.images, extra.images]),
                          torch.cat([torch.from_numpy(labels), extra.labels]), classes)
    both = pa.concat_tables([rows.select(COLUMNS), conflicts.select(COLUMNS).cast(
        rows.select(COLUMNS).schema)])
    digests = both.column("source_digest").to_pylist()
    subjects = both.column("subject_id").to_pylist()
    groups = [s if s is not None else f"digest:{d}" for s, d in zip(subjects, digests,
                                                                      strict=True)]
    options = AuditOptions(folds=args.folds, epochs=args.epochs, seed=args.seed)
    rivals = rival_labels(digests, audited.labels.numpy())
    audit = audit_labels(audited, both, options, groups=groups, rivals=rivals)

    flagged = np.asarray(audit.table.column("flagged").to_pylist())
    quality = np.asarray(audit.table.column("label_quality").to_pylist())
    n = len(labels)
    truth = planted
    hits = int((flagged[:n] & truth).sum())
    curve = precision_recall(quality[:n], truth)
    best_f1 = max(curve, key=lambda p: 2 * p["precision"] * p["recall"]
                  / max(1e-9, p["precision"] + p["recall"]))
    at_precision = [p for p in curve if p["precision"] >= 0.7]
    by_recall = {f"{r:.1f}": next((round(p["precision"], 3) for p in curve
                                   if p["recall"] >= r), None) for r in (0.5, 0.6, 0.7, 0.8, 0.9)}
    groups_flagged: dict[str, bool] = {}
    for d, f in zip(digests[n:], flagged[n:], strict=True):
        groups_flagged[d] = groups_flagged.get(d, False) or bool(f)
    # a group member already in the training rows counts with its flag there
    train_digests = {d: bool(f) for d, f in zip(digests[:n], flagged[:n], strict=True)}
    for d in groups_flagged:
        groups_flagged[d] = groups_flagged[d] or train_digests.get(d, False)
    result = {
        "options": {**vars(args), "work": str(args.work)},
        "audited": len(flagged), "training_faces": n, "conflict_members_added": len(flagged) - n,
        "minutes": round(audit.seconds / 60, 1),
        "planted": int(truth.sum()),
        "flagged_training": int(flagged[:n].sum()),
        "planted_recall": round(hits / max(1, truth.sum()), 3),
        "planted_precision": round(hits / max(1, flagged[:n].sum()), 3),
        "flagged_not_planted": int((flagged[:n] & ~truth).sum()),
        "precision_at_recall": by_recall,
        "best_f1_point": best_f1,
        "max_recall_at_precision_0.7": max((p["recall"] for p in at_precision), default=0.0),
        "conflict_groups": len(groups_flagged),
        "conflict_groups_flagged": sum(groups_flagged.values()),
        "flagged_per_class": audit.flagged_per_class(),
        "planted_per_class": dict(Counter(np.array(classes)[labels[truth]].tolist())),
        "curve": curve[:: max(1, len(curve) // 200)],
    }
    if not args.limit:
        storage.atomic_write_bytes(RESULT, json.dumps(result, indent=1).encode())
    for key, value in result.items():
        if key != "curve":
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
