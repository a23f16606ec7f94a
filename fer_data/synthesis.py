"""Synthesis: translate faces of other classes into the target class until it reaches its
top-up goal, keeping only outputs that pass the gate (the judge agrees, a face detector finds a
face, they copy neither their source nor any real training face), each traced to its source
and generator; and the gate's report."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from fer_data import storage
from fer_data.artefacts import (
    synthetic_report_path,
)
from fer_data.augment import TrainingFaces
from fer_data.detectors import Detector, eyes_found, faces_found
from fer_data.hash_search import near_pairs
from fer_data.images import decode_png, encode_png
from fer_data.judge import Judge
from fer_data.labels import target_count
from fer_data.phash import hamming, phash_batch
from fer_data.previews import contact_sheet
from fer_data.quality import (
    to_uint8,
)
from fer_data.schema import SYNTHETIC, reject_table
from fer_data.storage import StorageLayout
from stargan.generate import Trained, translate


def top_up_plan(rows: pa.Table, target: str, wanted: str) -> tuple[int, int, int]:
    """(real target-class faces, the goal, how many synthetic faces are needed)."""
    counts = Counter(rows["label"].to_pylist())
    have = counts.get(target, 0)
    goal = target_count(dict(counts), target, wanted)
    return have, goal, max(goal - have, 0)


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
    # the independent judge must rank the target first (the criterion its recall on real
    # disgust test faces is measured with) and give it at least this probability
    min_target_prob: float = 0.0
    min_source_distance: int = 6  # pHash bits from the face it was made from
    min_real_distance: int = 6  # pHash bits from any real training face (memorization)
    max_attempts_factor: int = 5  # give up after this many sources per wanted face
    batch_size: int = 64


@dataclass
class SynthesisResult:
    rows: pa.Table  # ready for publish_rows: image_id ... generator
    rejects: pa.Table
    needed: int
    attempts: int
    pairs: list[tuple[np.ndarray, np.ndarray]]  # (source, synthetic) pixels, for contact sheets

    @classmethod
    def empty(cls, needed: int) -> "SynthesisResult":
        """Nothing made (the generator was not used)."""
        return cls(SYNTHETIC.empty_table(), reject_table([]), needed, 0, [])


def synthesize(trained: Trained, data: TrainingFaces, target: str, needed: int,
               generator_id: str, seed: int, gate: GateOptions, judge: Judge,
               face_check: Detector) -> SynthesisResult:
    """Translate sources round-robin into `target` until `needed` faces pass the gate: the judge
    ranks the target first (with at least min_target_prob), `face_check` finds a face in it (the
    check the faces stage flags real face crops with), and it copies neither its source nor any
    real face."""
    if tuple(judge.classes) != tuple(data.classes):
        raise ValueError(f"the judge predicts {judge.classes}, the generator {data.classes}: "
                         "materialize expression_judge with the same class_set")
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
        pixels = to_uint8(fake, data.face_size)
        all_probs = judge.probabilities(torch.from_numpy(pixels).unsqueeze(1))
        probs = all_probs[:, c_target].numpy()
        top = (all_probs.argmax(1) == c_target).numpy()
        face_like = faces_found(face_check, list(pixels))
        hashes = phash_batch(list(pixels))
        from_source = hamming(hashes, real_hashes[batch])
        memorized = _near_any(hashes, real_hashes, gate.min_real_distance - 1)
        for k, i in enumerate(batch):
            reason = _gate(probs[k], bool(top[k]), face_like[k], from_source[k], memorized[k],
                           gate)
            if reason or len(accepted) >= needed:
                rejects.append({"dataset": "stargan", "source_path": ids[i], "stage": "augment",
                                "reason": reason or "not_needed",
                                "detail": f"judge p({target})={probs[k]:.2f}, "
                                          f"{'a' if face_like[k] else 'no'} face found by "
                                          f"{face_check.name}, "
                                          f"{int(from_source[k])} bits from source"})
                continue
            accepted.append(_row(data, i, pixels[k], hashes[k], probs[k], target, generator_id,
                                 seed))
            pairs.append((decode_png(data.rows["face"][i].as_py()), pixels[k]))
    return SynthesisResult(pa.Table.from_pylist(accepted, schema=SYNTHETIC),
                           reject_table(rejects), needed, attempts, pairs)


def sources_by_class(data: TrainingFaces, synthetic: pa.Table) -> dict[str, int]:
    """How many synthetic faces were made from a source face of each class."""
    label = dict(zip(data.rows["image_id"].to_pylist(), data.rows["label"].to_pylist(),
                     strict=True))
    return dict(Counter(label[s] for s in synthetic["source_image_id"].to_pylist()))


def _gate(prob: float, top: bool, face_like: bool, from_source: int, memorized: bool,
          gate: GateOptions) -> str | None:
    if not top or prob < gate.min_target_prob:
        return "low_target_probability"
    if not face_like:
        return "not_face_like"
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


def sample_pairs_png(pairs: list[tuple[np.ndarray, np.ndarray]], n: int, seed: int) -> bytes:
    """N random (source, synthetic) pairs side by side, four pairs per row."""
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(pairs))[:n]
    tiles = [im for j in chosen for im in pairs[j]]
    return encode_png(contact_sheet(tiles, columns=8, cell=64))


def write_gate_report(layout: StorageLayout, record: dict, result: SynthesisResult,
                      withheld: list[str] | None = None) -> dict:
    """The generator's quality report with the gate's figures added (and, when no faces were
    made because the generator misses the realism floors, why), as
    storage/synthetic_faces/synthetic_report.json, which publish copies. The generator's own
    report beside its checkpoint is stargan_model's and stays as it wrote it."""
    path = Path(record["report"])
    report = json.loads(path.read_text()) if path.exists() else {}
    report["published"] = not withheld
    report["withheld_because"] = withheld or []
    reasons = Counter(result.rejects["reason"].to_pylist()) if result.rejects.num_rows else {}
    report.update(gate_pass_rate=round(result.rows.num_rows / max(result.attempts, 1), 4),
                  gate_attempts=result.attempts, gate_needed=result.needed,
                  gate_accepted=result.rows.num_rows, gate_rejects=dict(reasons),
                  eyes_found=eyes_found_rates(result.pairs))
    storage.atomic_write_bytes(synthetic_report_path(layout),
                               json.dumps(report, indent=2).encode())
    return report


def eyes_found_rates(pairs: list[tuple[np.ndarray, np.ndarray]], most: int = 1000,
                     seed: int = 0) -> dict:
    """How often both eyes are found (`faces.eyes_found`) in accepted synthetic faces and in
    the faces they were made from, on at most `most` seeded pairs: near the sources' rate, the
    eyes survived translation."""
    picks = np.random.default_rng(seed).permutation(len(pairs))[:most]

    def rate(side: int) -> float | None:
        found = eyes_found([pairs[i][side] for i in picks])
        return round(float(found.mean()), 4) if len(found) else None

    return {"synthetic": rate(1), "their_sources": rate(0), "pairs": int(len(picks))}
