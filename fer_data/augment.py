"""Augment stage: train StarGAN on the real training faces (each checkpoint rated by the
independent judge, the best kept with its quality report), then translate faces of other
classes into the rare target class (disgust by default) until it reaches its target count,
keeping only outputs that pass the gate: the judge agrees, a face detector finds a face in them,
and they copy neither their source nor any real face."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from fer_data import storage
from fer_data.artefacts import load_face_crops
from fer_data.classifier import FaceTensors, from_pngs, to_float
from fer_data.evaluate import load_judge, split_faces
from fer_data.faces import Detector, eyes_found, faces_found
from fer_data.figures import figure_png, pyplot
from fer_data.hash_search import near_pairs
from fer_data.images import decode_png, encode_png
from fer_data.labels import class_names, map_label, target_count
from fer_data.phash import hamming, phash_batch
from fer_data.previews import contact_sheet
from fer_data.quality import (
    Judge,
    RealismFloors,
    RealismMeter,
    checkpoint_scorer,
    fixed_sources,
    from_gan,
    hit_rate_plot_png,
    quality_report,
    resize,
    to_gan,
    to_uint8,
)
from fer_data.schema import SYNTHETIC, reject_table
from fer_data.storage import StorageLayout
from stargan.generate import Trained, load_trained, translate
from stargan.train import (
    BEST,
    CHECKPOINT,
    PROFILES,
    TrainConfig,
    file_sha256,
    load_checkpoint,
    train,
)

TRAINING_COLUMNS = ["image_id", "dataset", "source_path", "label", "subject_id", "face", "phash"]


@dataclass
class TrainingFaces:
    """The real training-split faces of a class set, as StarGAN input."""

    images: torch.Tensor  # (N, 1, S, S) in [-1, 1], S = the generator's image size
    labels: torch.Tensor  # (N,) class index
    rows: pa.Table  # TRAINING_COLUMNS, label as the class set's name
    classes: tuple[str, ...]
    face_size: int  # the side of the published faces (synthetic faces are resized to it)


def training_faces(faces: pa.Table, splits: pa.Table, class_set: str = "fer7",
                   image_size: int | None = None) -> TrainingFaces:
    """Join the training split with the face crops; map labels into the class set; resize to
    the generator's `image_size` if it differs from the face size."""
    classes = class_names(class_set)
    train = splits.filter(pc.equal(splits["split"], "train")).select(["image_id"])
    rows = train.join(faces.select(TRAINING_COLUMNS), "image_id").sort_by("image_id")
    mapped = [map_label(label, class_set) for label in rows["label"].to_pylist()]
    keep = [m is not None for m in mapped]
    rows = rows.filter(pa.array(keep))
    rows = rows.set_column(rows.schema.get_field_index("label"), "label",
                           pa.array([m for m in mapped if m is not None]))
    faces = from_pngs(rows["face"].to_pylist(),
                      [classes.index(x) for x in rows["label"].to_pylist()], classes)
    return TrainingFaces(resize(to_float(faces.images), image_size or faces.size), faces.labels,
                         rows, classes, faces.size)


def load_training_faces(layout: StorageLayout, class_set: str = "fer7",
                        image_size: int | None = None) -> TrainingFaces:
    """`training_faces` from the stored face crops and splits tables."""
    faces, _ = load_face_crops(layout, TRAINING_COLUMNS)
    return training_faces(faces, storage.read_table(layout.table("splits", storage.ALL)),
                          class_set, image_size)


# ---------------------------------------------------------------------------------------------
# the generator: which profile, where its checkpoint lives, which one synthetic_faces uses

MODEL_RECORD = "model.json"


def stargan_config(profile: str, classes: tuple[str, ...], seed: int = 0, num_iters: int = 0,
                   device: str = "profile", checkpoint_every: int = 0) -> TrainConfig:
    """A profile's training config for these domains; the profile's image size is kept (the
    faces are resized to it at the boundary). num_iters / checkpoint_every 0 and device
    "profile" keep the profile's."""
    if profile not in PROFILES:
        raise ValueError(f"unknown StarGAN profile {profile!r}; choose from {sorted(PROFILES)}")
    base = PROFILES[profile]
    return replace(base, c_dim=len(classes), domains=list(classes), seed=seed,
                   num_iters=num_iters or base.num_iters,
                   checkpoint_every=checkpoint_every or base.checkpoint_every,
                   device=base.device if device == "profile" else device)


SMOKE_BELOW = 5000  # `auto`: fewer real training faces than this is a demo: smoke profile
SCORE_SOURCES = 60  # held-back faces per class that rate every checkpoint
REPORT_SOURCES = 100  # held-back faces per class that the quality report is measured on
REPORT = "synthetic_report.json"


def resolve_profile(profile: str, training_faces: int, cuda: bool) -> str:
    """`auto`: smoke for a demo-sized training set, full on a CUDA machine, else cpu."""
    if profile != "auto":
        return profile
    if training_faces < SMOKE_BELOW:
        return "smoke"
    return "full" if cuda else "cpu"


def model_dir(layout: StorageLayout) -> Path:
    if not storage.is_local(layout.storage_dir):
        raise ValueError("StarGAN checkpoints need a local storage root (torch.save)")
    return Path(layout.storage_dir) / "stargan_model"


def write_model_record(layout: StorageLayout, record: dict) -> Path:
    """Say which checkpoint is the current generator (profile, class set, path, sha256):
    synthetic_faces uses that one, so the two assets cannot disagree on the profile."""
    return storage.atomic_write_bytes(model_dir(layout) / MODEL_RECORD,
                                      json.dumps(record, indent=2).encode())


def read_model_record(layout: StorageLayout) -> dict:
    path = model_dir(layout) / MODEL_RECORD
    if not path.exists():
        raise FileNotFoundError(f"no trained generator recorded at {path}: materialize "
                                "stargan_model first")
    return json.loads(path.read_text())


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


def translation_grid(G, faces: FaceTensors, image_size: int) -> np.ndarray:
    """Rows = the first face of each class in `faces` (real faces); first column the source,
    then its translation into each class."""
    labels = faces.labels.numpy()
    picks = [int(np.flatnonzero(labels == k)[0]) for k in range(len(faces.classes))
             if (labels == k).any()]
    if not picks:
        return contact_sheet([])
    tiles = []
    for i in picks:
        source = faces.images[i:i + 1]
        tiles.append(source[0, 0].numpy())
        for k in range(len(faces.classes)):
            fake = translate(G, to_gan(source, image_size), torch.tensor([k]), len(faces.classes))
            tiles.append(from_gan(fake, faces.size)[0, 0].numpy())
    return contact_sheet(tiles, columns=len(faces.classes) + 1, cell=faces.size)


def loss_plot_png(history: list[dict]) -> bytes:
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.2), dpi=100)
    losses = [h for h in history if any(k.startswith(("D/", "G/")) for k in h)]
    steps = [h["step"] for h in losses]
    for key in sorted({k for h in losses for k in h if k.startswith(("D/", "G/"))}):
        ax = axes[0] if key.startswith("D/") else axes[1]
        ax.plot(steps, [h.get(key, np.nan) for h in losses], label=key)
    for ax, title in zip(axes, ("discriminator", "generator"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    return figure_png(fig)


def sample_pairs_png(pairs: list[tuple[np.ndarray, np.ndarray]], n: int, seed: int) -> bytes:
    """N random (source, synthetic) pairs side by side, four pairs per row."""
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(pairs))[:n]
    tiles = [im for j in chosen for im in pairs[j]]
    return encode_png(contact_sheet(tiles, columns=8, cell=64))


@dataclass
class GeneratorRun:
    checkpoint: Path  # the chosen checkpoint (best judge score, else the last)
    trained: Trained
    data: TrainingFaces
    report: dict  # quality_report's figures + profile, step, sha256, minutes
    figures: dict[str, bytes]  # PNGs written beside the checkpoint


def train_generator(layout: StorageLayout, profile: str, class_set: str, judge: Judge,
                    judge_metrics: dict, real: dict[str, FaceTensors], target: str = "disgust",
                    seed: int = 0, num_iters: int = 0, device: str = "profile",
                    max_minutes: float = 0.0, floors: RealismFloors | None = None,
                    log=print, checkpoint_every: int = 0) -> GeneratorRun:
    """Train StarGAN on the real training faces with every checkpoint rated on held-back
    (validation) faces; keep the eligible one (clearing the realism floors) with the highest
    judge hit rate, measure its quality report on a larger fixed held-back set against real
    test faces, write report + figures beside it and record it as the generator."""
    floors = floors or RealismFloors()
    config = stargan_config(profile, class_names(class_set), seed, num_iters, device,
                            checkpoint_every)
    data = load_training_faces(layout, class_set, config.image_size)
    if len(data.labels) == 0:
        raise ValueError("no real training faces: materialize splits first")
    out = model_dir(layout) / profile
    meter = RealismMeter(fixed_sources(real["val"], SCORE_SOURCES, seed), real["val"], judge,
                         target, config.image_size)
    last = train(config, data.images, data.labels, out, log=log,
                 scorer=checkpoint_scorer(meter, floors), max_minutes=max_minutes)
    chosen = out / BEST if (out / BEST).exists() else last  # no eligible checkpoint: the last
    trained = load_trained(chosen)
    sources = fixed_sources(real["val"], REPORT_SOURCES, seed + 1)
    report = quality_report(trained.G, config.image_size, judge, target, sources, real["train"],
                            real["test"], judge_metrics, floors)
    history = load_checkpoint(last)["history"]  # the whole run's, not just the chosen one's
    report.update(profile=profile, step=trained.step, checkpoint=str(chosen),
                  sha256=file_sha256(chosen),
                  training_minutes=round(max((h.get("seconds", 0) for h in history),
                                             default=0) / 60, 1),
                  curve=[{k: v for k, v in h.items() if k == "step" or k == "seconds"
                          or not k.startswith(("D/", "G/"))}
                         for h in history if "judge_hit_rate" in h])
    figures = {"translation_grid.png": encode_png(translation_grid(trained.G, sources,
                                                                   config.image_size)),
               "loss_curves.png": loss_plot_png(history),
               "judge_hit_rate.png": hit_rate_plot_png(history, target)}
    for name, png in figures.items():
        storage.atomic_write_bytes(out / name, png)
    storage.atomic_write_bytes(out / REPORT, json.dumps(report, indent=2).encode())
    write_model_record(layout, {"checkpoint": str(chosen), "profile": profile,
                                "class_set": class_set, "target": target,
                                "sha256": report["sha256"], "step": trained.step,
                                "eligible": report["eligible"],
                                "floor_failures": report["floor_failures"],
                                "report": str(out / REPORT)})
    return GeneratorRun(chosen, trained, data, report, figures)


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


def synthetic_report_path(layout: StorageLayout):
    return layout.storage_dir / "synthetic_faces" / REPORT


def main(argv: list[str] | None = None) -> None:
    """Train or continue the generator outside Dagster, on the tables of the last `make run`
    (splits and expression_judge must exist), e.g. on a GPU machine in segments:

        python -m fer_data.augment --profile full --max-minutes 10   # repeat until "done"
    """
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--profile", default="auto", choices=["auto", *sorted(PROFILES)])
    parser.add_argument("--class-set", default="fer7")
    parser.add_argument("--device", default="profile", choices=["profile", "cpu", "cuda"])
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="train at most this long, then report on the best checkpoint so far")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    layout = StorageLayout.from_env()
    judge, judge_metrics = load_judge(layout)
    real = split_faces(layout, args.class_set)
    profile = resolve_profile(args.profile, len(real["train"]), torch.cuda.is_available())
    run = train_generator(layout, profile, args.class_set, judge, judge_metrics, real,
                          seed=args.seed, device=args.device, max_minutes=args.max_minutes)
    done = load_checkpoint(run.checkpoint.parent / CHECKPOINT)["step"] >= \
        run.trained.config.num_iters
    keys = ("judge_hit_rate", "judge_real_recall", "ssim_to_source", "training_minutes")
    print(json.dumps({k: run.report[k] for k in keys}, indent=2))
    print("done" if done else "continue: run the same command again to resume")


if __name__ == "__main__":
    main()
