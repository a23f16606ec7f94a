"""Label audit: which training labels are probably wrong.

FER2013's labels are noisy (FER+ re-voted them with ten annotators and changed about one in ten;
fear -> neutral most often). The audit ranks every training face by how much an independent
model trusts its given label, with confident learning (Northcutt et al., JAIR 2021, the
`cleanlab` package):

1. out-of-fold predicted probabilities: the training split cut into `folds` folds (stratified
   by label, a subject's faces kept in one fold so a CK+ sequence cannot vouch for itself),
   the compact CNN of `fer_data.classifier` trained on the other folds and asked about this one.
   No face is scored by a model that saw it; val and test are never touched;
2. `cleanlab.filter.find_label_issues` flags the faces whose given label the probabilities
   contradict (per-class thresholds from the confident joint, so a hard class is not flagged
   wholesale), and `cleanlab.rank.get_label_quality_scores` gives each face a label quality in
   [0, 1] (the probability of its given label: low = suspect);
3. the same picture cannot show two expressions: a face whose copies (byte-identical files,
   or a de-duplication cluster whose other labels face_index dropped as a conflict) carry other
   labels is flagged too when the probabilities prefer one of those labels to its own, so every
   such conflict has at least one side flagged;
4. the suggested label is the most probable class.

The result is the `label_issues` table (schema.LABEL_ISSUES): one row per audited face.
Publishing keeps every row by default and adds `label_quality`; `PublishOptions.label_audit`
drops or relabels the flagged ones instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from PIL import Image, ImageDraw
from sklearn.model_selection import StratifiedGroupKFold

from fer_data.classifier import FaceTensors, FitOptions, build_model, fit, predict_proba
from fer_data.images import encode_png
from fer_data.labels import class_names, map_label
from fer_data.schema import LABEL_ISSUES

AUDIT_METADATA = "fer_data.label_audit"  # Parquet key of the options the audit ran with


@dataclass(frozen=True)
class AuditOptions:
    folds: int = 4
    epochs: int = 5  # per fold: 4 folds x 5 epochs of the compact CNN on ~19k faces take
    # about 25 minutes on 2 CPU cores (bench/label_audit.py)
    min_steps: int = 0  # at least this many steps per fold (a small demo set gets more epochs)
    filter_by: str = "prune_by_noise_rate"  # cleanlab's filter (its default)
    seed: int = 0
    device: str = "cpu"

    def fit_options(self) -> FitOptions:
        """The judge's recipe (class-weighted halfway), for this audit's budget."""
        return FitOptions(epochs=self.epochs, min_steps=self.min_steps, class_weighted=True,
                          seed=self.seed, device=self.device)


def fold_of(labels: np.ndarray, groups: list[str | None], folds: int, seed: int) -> np.ndarray:
    """The fold of every face: stratified by label, a subject's faces in one fold (faces
    without a subject id are their own group)."""
    keys = [g if g is not None else f"\0face{i}" for i, g in enumerate(groups)]
    codes = np.unique(keys, return_inverse=True)[1]
    # a class with fewer faces than folds cannot be stratified; sklearn warns and copes
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = np.full(len(labels), -1, np.int64)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels, codes)):
        out[held] = k
    return out


def out_of_fold_probabilities(faces: FaceTensors, fold: np.ndarray, options: AuditOptions,
                              log: Callable[[str], None] = print) -> np.ndarray:
    """(N, classes) probabilities, each face's from the model trained without its fold."""
    probs = np.zeros((len(faces), len(faces.classes)), np.float64)
    for k in range(int(fold.max()) + 1):
        held = np.flatnonzero(fold == k)
        train = faces.subset(np.flatnonzero(fold != k))
        model = build_model("cnn", len(faces.classes), faces.size, seed=options.seed + k)
        fitted = fit(model, train, replace(options.fit_options(), seed=options.seed + k),
                     log=lambda line, k=k: log(f"fold {k + 1}/{fold.max() + 1}: {line}"))
        probs[held] = predict_proba(fitted.model, faces.images[torch.as_tensor(held)],
                                    options.device).numpy()
    return probs


@dataclass
class Audit:
    table: pa.Table  # LABEL_ISSUES, one row per audited face
    seconds: float
    options: AuditOptions

    def flagged(self) -> pa.Table:
        """The flagged rows, most suspect (lowest label quality) first."""
        rows = self.table.filter(self.table["flagged"])
        return rows.sort_by([("label_quality", "ascending"), ("image_id", "ascending")])

    def flagged_per_class(self) -> dict[str, int]:
        labels = self.table.filter(self.table["flagged"]).column("label").to_pylist()
        return {c: labels.count(c) for c in dict.fromkeys(sorted(labels))}

    def metadata(self) -> dict[bytes, bytes]:
        return {AUDIT_METADATA.encode(): json.dumps(asdict(self.options)).encode()}


def rival_labels(pictures: list[str], labels: np.ndarray,
                 outside: dict[str, set[int]] | None = None) -> list[frozenset[int]]:
    """For every face, the other labels its picture carries: among the audited faces (same
    `pictures` key) and in `outside` (labels of copies that are not audited, by key)."""
    seen: dict[str, set[int]] = {k: set(v) for k, v in (outside or {}).items()}
    for key, label in zip(pictures, labels, strict=True):
        seen.setdefault(key, set()).add(int(label))
    return [frozenset(seen[k] - {int(y)}) for k, y in zip(pictures, labels, strict=True)]


def index_rivals(index: pa.Table, image_ids: list[str], class_set: str) -> list[frozenset[int]]:
    """rival_labels of the audited faces `image_ids` from face_index: the labels of the copies
    in each one's de-duplication cluster that face_index dropped as a label conflict."""
    classes = class_names(class_set)
    outside: dict[int, set[int]] = {}
    dropped = index.filter(pc.equal(index["drop_reason"], "label_conflict"))
    for c, label in zip(dropped["cluster_id"].to_pylist(), dropped["label"].to_pylist(),
                        strict=True):
        mapped = map_label(label, class_set)
        if mapped is not None:
            outside.setdefault(c, set()).add(classes.index(mapped))
    where = pc.index_in(pa.array(image_ids, pa.string()), index["image_id"])
    clusters = index["cluster_id"].take(where).to_pylist()
    return [frozenset(outside.get(c, ())) for c in clusters]


def flag_issues(labels: np.ndarray, probs: np.ndarray, filter_by: str,
                rivals: list[frozenset[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(flagged, label quality) of every face from its given label and out-of-fold
    probabilities; with `rivals` (rival_labels), a face is also flagged when the probabilities
    prefer a label its other copies carry to its own."""
    labels = np.asarray(labels, np.int64)
    conflict = np.zeros(len(labels), bool)
    for i, other in enumerate(rivals or []):
        conflict[i] = any(probs[i, r] > probs[i, labels[i]] for r in other)
    present = np.unique(labels)
    if len(present) < 2:  # nothing to compare a label with
        return conflict, probs[np.arange(len(labels)), labels]
    # cleanlab wants every class index to occur; restrict to the classes present
    remap = np.full(probs.shape[1], -1, np.int64)
    remap[present] = np.arange(len(present))
    sub = probs[:, present]
    sub = sub / sub.sum(1, keepdims=True)
    flagged = find_label_issues(remap[labels], sub, filter_by=filter_by, n_jobs=1)
    quality = get_label_quality_scores(remap[labels], sub, method="self_confidence")
    return np.asarray(flagged, bool) | conflict, np.asarray(quality, np.float64)


def audit_labels(faces: FaceTensors, rows: pa.Table, options: AuditOptions,
                 log: Callable[[str], None] = print,
                 groups: list[str | None] | None = None,
                 rivals: list[frozenset[int]] | None = None) -> Audit:
    """The label audit of the training faces `faces`; `rows` holds each face's image_id,
    dataset and subject_id, in the same order. Faces of one group (default: the subject) share
    a fold; `rivals` (rival_labels) are the other labels each face's copies carry."""
    started = time.perf_counter()
    labels = faces.labels.numpy()
    if len(faces) < 2 * options.folds:
        raise ValueError(f"{len(faces)} training faces: too few for a {options.folds}-fold "
                         "label audit")
    fold = fold_of(labels, rows.column("subject_id").to_pylist() if groups is None else groups,
                   options.folds, options.seed)
    probs = out_of_fold_probabilities(faces, fold, options, log)
    flagged, quality = flag_issues(labels, probs, options.filter_by, rivals)
    classes = np.array(faces.classes, dtype=object)
    suggested = probs.argmax(1)
    table = pa.table({
        "image_id": rows.column("image_id"),
        "dataset": rows.column("dataset"),
        "label": pa.array(classes[labels].tolist(), pa.string()),
        "suggested_label": pa.array(classes[suggested].tolist(), pa.string()),
        "label_quality": pa.array(quality, pa.float32()),
        "suggested_probability": pa.array(probs.max(1), pa.float32()),
        "flagged": pa.array(flagged),
        "fold": pa.array(fold, pa.int32()),
    }, schema=LABEL_ISSUES)
    audit = Audit(table, time.perf_counter() - started, options)
    return replace(audit, table=table.replace_schema_metadata(audit.metadata()))


def precision_recall(scores: np.ndarray, truth: np.ndarray) -> list[dict]:
    """Precision and recall of "flag the faces scoring below t" against known-bad faces
    (`truth`), at every distinct threshold t, lowest score first: the audit's curve against
    planted label flips."""
    order = np.argsort(scores, kind="stable")
    hits = np.cumsum(truth[order])
    total = max(1, int(truth.sum()))
    out = []
    for n in range(1, len(order) + 1):
        if n < len(order) and scores[order[n]] == scores[order[n - 1]]:
            continue
        out.append({"threshold": float(scores[order[n - 1]]), "flagged": n,
                    "precision": float(hits[n - 1] / n), "recall": float(hits[n - 1] / total)})
    return out


def suspects_png(faces: list[np.ndarray], captions: list[str], columns: int = 8,
                 cell: int = 80) -> bytes:
    """The most suspect faces, each captioned with its given and suggested label (two lines),
    as a PNG contact sheet."""
    caption_h, pad = 28, 4
    rows = max(1, (len(faces) + columns - 1) // columns)
    sheet = Image.new("L", (columns * (cell + pad) + pad, rows * (cell + caption_h + pad) + pad),
                      255)
    draw = ImageDraw.Draw(sheet)
    for i, (face, text) in enumerate(zip(faces, captions, strict=True)):
        r, c = divmod(i, columns)
        x, y = pad + c * (cell + pad), pad + r * (cell + caption_h + pad)
        sheet.paste(Image.fromarray(face).resize((cell, cell), Image.Resampling.BILINEAR), (x, y))
        draw.text((x, y + cell + 1), text, fill=0)
    return encode_png(np.asarray(sheet))
