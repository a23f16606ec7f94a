"""Augment stage, the generator: the real training faces as StarGAN input, the profile's
config, and training with every checkpoint rated by the independent judge (the best eligible
one kept, with its quality report and figures, recorded in model.json). What is made with it:
fer_data/synthesis.py."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from fer_data import storage
from fer_data.artefacts import (
    REPORT,
    judge_dir,
    load_face_crops,
    split_faces,
    stargan_dir,
    training_split,
)
from fer_data.classifier import FaceTensors, to_float
from fer_data.figures import figure_png, pyplot
from fer_data.images import encode_png
from fer_data.judge import Judge, load_judge
from fer_data.labels import class_names
from fer_data.previews import contact_sheet
from fer_data.quality import (
    RealismFloors,
    RealismMeter,
    checkpoint_scorer,
    fixed_sources,
    from_gan,
    hit_rate_plot_png,
    quality_report,
    resize,
    to_gan,
)
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
    """The training split's faces in the class set (artefacts.training_split), resized to
    the generator's `image_size` if it differs from the face size."""
    rows, faces = training_split(faces.select(TRAINING_COLUMNS), splits, class_set)
    return TrainingFaces(resize(to_float(faces.images), image_size or faces.size), faces.labels,
                         rows, faces.classes, faces.size)


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


def resolve_profile(profile: str, training_faces: int, cuda: bool) -> str:
    """`auto`: smoke for a demo-sized training set, full on a CUDA machine, else cpu."""
    if profile != "auto":
        return profile
    if training_faces < SMOKE_BELOW:
        return "smoke"
    return "full" if cuda else "cpu"


def write_model_record(layout: StorageLayout, record: dict) -> Path:
    """Say which checkpoint is the current generator (profile, class set, path, sha256):
    synthetic_faces uses that one, so the two assets cannot disagree on the profile."""
    return storage.atomic_write_bytes(stargan_dir(layout) / MODEL_RECORD,
                                      json.dumps(record, indent=2).encode())


def read_model_record(layout: StorageLayout) -> dict:
    path = stargan_dir(layout) / MODEL_RECORD
    if not path.exists():
        raise FileNotFoundError(f"no trained generator recorded at {path}: materialize "
                                "stargan_model first")
    return json.loads(path.read_text())


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
    out = stargan_dir(layout) / profile
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
    judge, judge_metrics = load_judge(judge_dir(layout))
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
