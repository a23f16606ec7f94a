"""Augment stage: train StarGAN on the curated training faces, then translate faces of other
classes into the rare target class (disgust by default) until it reaches its target count,
keeping only outputs that pass a quality gate."""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from fer_data import storage
from fer_data.curate import load_faces
from fer_data.hash_search import near_pairs
from fer_data.images import decode_png, encode_png
from fer_data.phash import hamming, phash_batch
from fer_data.previews import contact_sheet
from fer_data.publish import CLASS_SETS, PublishOptions, map_label
from fer_data.schema import REJECT
from fer_data.storage import StorageLayout
from stargan.generate import Trained, domain_probabilities, translate

TRAINING_COLUMNS = ["image_id", "dataset", "source_path", "label", "subject_id", "face", "phash"]


@dataclass
class TrainingFaces:
    """The real training-split faces of a class set, as StarGAN input."""

    images: torch.Tensor  # (N, 1, S, S) in [-1, 1]
    labels: torch.Tensor  # (N,) class index
    rows: pa.Table  # TRAINING_COLUMNS, label as the class set's name
    classes: tuple[str, ...]


def training_faces(faces: pa.Table, splits: pa.Table, class_set: str = "fer7") -> TrainingFaces:
    """Join the training split with the face crops; map labels into the class set."""
    classes = CLASS_SETS[class_set]
    train = splits.filter(pc.equal(splits["split"], "train")).select(["image_id"])
    rows = train.join(faces.select(TRAINING_COLUMNS), "image_id").sort_by("image_id")
    mapped = [map_label(label, PublishOptions(class_set)) for label in rows["label"].to_pylist()]
    keep = [m is not None for m in mapped]
    rows = rows.filter(pa.array(keep))
    rows = rows.set_column(rows.schema.get_field_index("label"), "label",
                           pa.array([m for m in mapped if m is not None]))
    pixels = np.stack([decode_png(b) for b in rows["face"].to_pylist()]) if rows.num_rows else \
        np.zeros((0, 48, 48), np.uint8)
    images = torch.from_numpy(pixels).float().div(127.5).sub(1.0).unsqueeze(1)
    labels = torch.tensor([classes.index(x) for x in rows["label"].to_pylist()])
    return TrainingFaces(images, labels, rows, classes)


def load_training_faces(layout: StorageLayout, class_set: str = "fer7") -> TrainingFaces:
    """`training_faces` from the stored face crops and splits tables."""
    faces, _ = load_faces(layout, TRAINING_COLUMNS)
    return training_faces(faces, storage.read_table(layout.table("splits", storage.ALL)), class_set)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.squeeze(1).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def target_count(counts: dict[str, int], target: str, wanted: str) -> int:
    """How many target-class faces training should end with: another class's count (the
    source project used fear's), "max" (the largest class), or a number."""
    if wanted == "max":
        return max(counts.values())
    if wanted.isdigit():
        return int(wanted)
    if wanted not in counts:
        raise ValueError(f"target {wanted!r}: not a class in {sorted(counts)}, 'max' or a number")
    return counts[wanted]


def round_robin_sources(rows: pa.Table, target: str, seed: int) -> list[int]:
    """Row indices of non-target faces, alternating over classes and, within a class, over
    subjects (faces without a subject count as their own subject), so no class and no identity
    dominates the synthetic faces."""
    rng = np.random.default_rng(seed)
    per_class: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    labels, subjects = rows["label"].to_pylist(), rows["subject_id"].to_pylist()
    ids = rows["image_id"].to_pylist()
    for i, (label, subject) in enumerate(zip(labels, subjects, strict=True)):
        if label != target:
            per_class[label][subject or ids[i]].append(i)
    streams = []
    for label in sorted(per_class):
        groups = [per_class[label][k] for k in sorted(per_class[label])]
        groups = [list(np.array(g)[rng.permutation(len(g))]) for g in groups]
        groups = [groups[j] for j in rng.permutation(len(groups))]
        streams.append([i for layer in zip_longest(*groups) for i in layer if i is not None])
    return [int(i) for layer in zip_longest(*streams) for i in layer if i is not None]


@dataclass(frozen=True)
class GateOptions:
    min_target_prob: float = 0.5  # the discriminator's domain head must agree
    min_source_distance: int = 6  # pHash bits from the face it was made from
    min_real_distance: int = 6  # pHash bits from any real training face (memorization)
    max_attempts_factor: int = 4  # give up after this many sources per wanted face
    batch_size: int = 64


@dataclass
class SynthesisResult:
    rows: pa.Table  # ready for publish_rows: image_id ... generator
    rejects: pa.Table
    needed: int
    attempts: int
    pairs: list[tuple[np.ndarray, np.ndarray]]  # (source, synthetic) pixels, for contact sheets


def synthesize(trained: Trained, data: TrainingFaces, target: str, needed: int,
               generator_id: str, seed: int, gate: GateOptions) -> SynthesisResult:
    """Translate sources round-robin into `target` until `needed` faces pass the gate."""
    c_target = data.classes.index(target)
    order = round_robin_sources(data.rows, target, seed)[: needed * gate.max_attempts_factor]
    real_hashes = np.asarray(data.rows["phash"].to_numpy(), dtype=np.int64)
    ids = data.rows["image_id"].to_pylist()
    accepted: list[dict] = []
    rejects: list[dict] = []
    pairs = []
    attempts = 0
    for start in range(0, len(order), gate.batch_size):
        if len(accepted) >= needed:
            break
        batch = order[start:start + gate.batch_size]
        attempts += len(batch)
        fake = translate(trained.G, data.images[batch], torch.full((len(batch),), c_target),
                         trained.config.c_dim)
        probs = domain_probabilities(trained.D, fake)[:, c_target].numpy()
        pixels = to_uint8(fake)
        hashes = phash_batch(list(pixels))
        from_source = hamming(hashes, real_hashes[batch])
        memorized = _near_any(hashes, real_hashes, gate.min_real_distance - 1)
        for k, i in enumerate(batch):
            reason = _gate(probs[k], from_source[k], memorized[k], gate)
            if reason or len(accepted) >= needed:
                rejects.append({"dataset": "stargan", "source_path": ids[i], "stage": "augment",
                                "reason": reason or "not_needed",
                                "detail": f"p({target})={probs[k]:.2f}, "
                                          f"{int(from_source[k])} bits from source"})
                continue
            accepted.append(_row(data, i, pixels[k], hashes[k], probs[k], target, generator_id,
                                 seed))
            pairs.append((decode_png(data.rows["face"][i].as_py()), pixels[k]))
    return SynthesisResult(pa.Table.from_pylist(accepted, schema=SYNTHETIC),
                           pa.Table.from_pylist(rejects, schema=REJECT), needed, attempts, pairs)


SYNTHETIC = pa.schema([
    ("image_id", pa.string()), ("split", pa.string()), ("dataset", pa.string()),
    ("source_path", pa.string()), ("label", pa.string()), ("subject_id", pa.string()),
    ("face", pa.binary()),
    ("is_synthetic", pa.bool_()), ("source_image_id", pa.string()), ("generator", pa.string()),
    ("phash", pa.int64()), ("target_probability", pa.float32()),
])


def _gate(prob: float, from_source: int, memorized: bool, gate: GateOptions) -> str | None:
    if prob < gate.min_target_prob:
        return "low_target_probability"
    if from_source < gate.min_source_distance:
        return "copy_of_source"
    if memorized:
        return "memorized"
    return None


def _near_any(hashes: np.ndarray, reference: np.ndarray, threshold: int) -> np.ndarray:
    """For each hash, whether some reference hash lies within `threshold` bits. The source
    itself is in the reference set: a face too close to its own source fails here too, which
    is why the source check runs first and names the reason."""
    if threshold < 0:
        return np.zeros(len(hashes), bool)
    pairs = near_pairs(hashes, reference, threshold, same_set=False)
    near = np.zeros(len(hashes), bool)
    near[pairs[:, 0]] = True
    return near


def _row(data: TrainingFaces, i: int, pixels: np.ndarray, phash: int, prob: float, target: str,
         generator_id: str, seed: int) -> dict:
    source = data.rows["image_id"][i].as_py()
    key = f"{source}|{target}|{generator_id}|{seed}"
    return {
        "image_id": "syn-" + hashlib.sha1(key.encode()).hexdigest()[:16],
        "split": "train",
        "dataset": "stargan",
        "source_path": data.rows["source_path"][i].as_py(),
        "label": target,
        "subject_id": data.rows["subject_id"][i].as_py(),
        "face": encode_png(pixels),
        "is_synthetic": True,
        "source_image_id": source,
        "generator": generator_id,
        "phash": int(phash),
        "target_probability": float(prob),
    }


def translation_grid(trained: Trained, data: TrainingFaces, per_class: int = 1) -> np.ndarray:
    """Rows = a real face of each class; first column the source, then one column per target
    class."""
    picks = []
    labels = data.labels.numpy()
    for k in range(len(data.classes)):
        picks += list(np.nonzero(labels == k)[0][:per_class])
    if not picks:
        return contact_sheet([])
    sources = data.images[picks]
    tiles = []
    for i in range(len(picks)):
        row = [to_uint8(sources[i:i + 1])[0]]
        for k in range(len(data.classes)):
            fake = translate(trained.G, sources[i:i + 1], torch.tensor([k]),
                             trained.config.c_dim)
            row.append(to_uint8(fake)[0])
        tiles += row
    return contact_sheet(tiles, columns=len(data.classes) + 1, cell=48)


def loss_plot_png(history: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    steps = [h["step"] for h in history]
    for key in sorted({k for h in history for k in h if k != "step"}):
        ax = axes[0] if key.startswith("D/") else axes[1]
        ax.plot(steps, [h.get(key, np.nan) for h in history], label=key)
    for ax, title in zip(axes, ("discriminator", "generator"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def sample_pairs_png(pairs: list[tuple[np.ndarray, np.ndarray]], n: int, seed: int) -> bytes:
    """N random (source, synthetic) pairs side by side, four pairs per row."""
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(pairs))[:n]
    tiles = [im for j in chosen for im in pairs[j]]
    return encode_png(contact_sheet(tiles, columns=8, cell=64))


def write_png(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
