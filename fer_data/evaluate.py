"""Evaluate stage: expression classifiers trained on a published dataset, scored on its real
test split (the judge, trained before publishing, is fer_data/judge.py):

- the downstream command (`train_classifier`): a CNN or ViT-Tiny trained with or without the
  synthetic rows, checkpoint chosen on val, metrics on the real test split;
- the augmentation experiment (`run_experiment`): every variant x seed of that command.

    python -m fer_data.evaluate --data curated/fer7 --out runs/cnn --model cnn
    python -m fer_data.evaluate --data curated/fer7 --out runs/vit --model vit --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pyarrow.parquet as pq
import torch

from fer_data import storage
from fer_data.classifier import (
    VIT_PATCH_SIZE,
    FitOptions,
    build_model,
    confusion_png,
    fit,
    load_split,
    metrics,
    predict,
    save_model,
)
from fer_data.figures import figure_png, pyplot
from fer_data.labels import target_count

# The recipe of each model where a run does not say otherwise: the CNN with SGD + one-cycle
# (measured best on 2 CPU cores, bench/judge.py), ViT-Tiny with AdamW + CutMix (the source
# project's recipe).
MODEL_DEFAULTS: dict[str, dict] = {
    "cnn": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4, "mix": "none", "epochs": 10},
    "vit": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "mix": "cutmix",
            "epochs": 30},
}


# ---------------------------------------------------------------------------------------------
# the downstream command


@dataclass
class RunConfig:
    data: str  # a published dataset folder, e.g. curated/fer7
    out: str  # the run folder
    model: Literal["cnn", "vit"] = "cnn"
    synthetic: Literal["include", "exclude"] = "include"
    flagged: Literal["include", "exclude"] = "include"  # rows the label audit flagged
    epochs: int = 0  # 0: the model's default
    batch_size: int = 128
    optimizer: Literal["", "sgd", "adamw"] = ""  # "": the model's default
    lr: float = 0.0  # 0: the model's default
    weight_decay: float = -1.0  # -1: the model's default
    label_smoothing: float = 0.1
    class_weighted: bool = False
    class_weight_power: float = FitOptions.class_weight_power  # the judge's weighting
    oversample: dict[str, float] = field(default_factory=dict)  # class -> draw factor
    oversample_synthetic: dict[str, float] = field(default_factory=dict)  # ... of synthetic rows
    mix: Literal["", "none", "cutmix"] = ""
    max_minutes: float = 0.0
    max_steps: int = 0
    patch_size: int = VIT_PATCH_SIZE
    device: str = "auto"
    threads: int = 0  # torch threads (0: torch's default)
    seed: int = 0

    def fit_options(self) -> FitOptions:
        defaults = MODEL_DEFAULTS[self.model]
        return FitOptions(
            epochs=self.epochs or defaults["epochs"], batch_size=self.batch_size,
            optimizer=self.optimizer or defaults["optimizer"], lr=self.lr or defaults["lr"],
            weight_decay=defaults["weight_decay"] if self.weight_decay < 0 else self.weight_decay,
            label_smoothing=self.label_smoothing, class_weighted=self.class_weighted,
            class_weight_power=self.class_weight_power, oversample=dict(self.oversample),
            oversample_synthetic=dict(self.oversample_synthetic),
            mix=self.mix or defaults["mix"],
            max_minutes=self.max_minutes, max_steps=self.max_steps, seed=self.seed,
            device=resolve_device(self.device))


def published_generators(data: str | Path) -> list[str]:
    """The generators (`sha256=... step=... seed=...`) of a class set's synthetic rows."""
    return sorted(set(pq.read_table(Path(data) / "train.parquet", columns=["generator"])
                      .column("generator").drop_null().to_pylist()))


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def train_classifier(config: RunConfig, log: Callable[[str], None] = print) -> dict:
    """Train on the published training split (synthetic rows per `config.synthetic`), keep the
    best epoch on the real validation split, evaluate on the real test split; write
    metrics.json, history.json, config.json, confusion_matrix.png and model.pt into the run
    folder and return the metrics."""
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    train = load_split(config.data, "train", synthetic=config.synthetic == "include",
                       flagged=config.flagged == "include")
    val = load_split(config.data, "val", synthetic=False)
    test = load_split(config.data, "test", synthetic=False)
    options = config.fit_options()
    model = build_model(config.model, len(train.classes), train.size, config.seed,
                        config.patch_size)
    result = fit(model, train, options, val=val, log=log)
    scores = metrics(predict(result.model, test, options.device), test.labels.numpy(),
                     test.classes)
    synthetic_rows = int(train.synthetic.sum()) if train.synthetic is not None else 0
    generators = published_generators(config.data) if synthetic_rows else []
    scores.update(model=config.model, seed=config.seed, train_rows=len(train),
                  synthetic_rows=synthetic_rows, generators=generators,
                  options=asdict(options), train_counts=dict(zip(
                      train.classes, train.counts().tolist(), strict=True)),
                  best_epoch=result.best_epoch, steps=result.steps,
                  train_seconds=round(result.seconds, 1),
                  seconds=round(time.perf_counter() - started, 1), device=options.device)
    out = Path(config.out)
    save_model(out / "model.pt", result.model, config.model, train.classes, train.size,
               patch_size=config.patch_size)
    for name, value in (("metrics.json", scores), ("history.json", result.history),
                        ("config.json", asdict(config))):
        storage.atomic_write_bytes(out / name, json.dumps(value, indent=2).encode())
    storage.atomic_write_bytes(out / "confusion_matrix.png",
                               confusion_png(scores["confusion_matrix"], test.classes))
    f1 = ", ".join(f"{c} {v['f1']:.2f}" for c, v in scores["per_class"].items())
    log(f"test accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f}, "
        f"F1 per class: {f1} -> {out}")
    return scores


def parse_oversample(text: str) -> dict[str, float]:
    """"disgust=4,fear=2" -> {"disgust": 4.0, "fear": 2.0}."""
    out = {}
    for part in filter(None, text.split(",")):
        name, _, factor = part.partition("=")
        out[name.strip()] = float(factor or 1)
    return out


def parse_args(argv: list[str] | None = None) -> RunConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = {"model": ("cnn", "vit"), "synthetic": ("include", "exclude"),
               "flagged": ("include", "exclude"),
               "optimizer": ("", "sgd", "adamw"), "mix": ("", "none", "cutmix")}
    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("data", "out"):
            parser.add_argument(flag, required=True)
        elif f.name in ("oversample", "oversample_synthetic"):
            parser.add_argument(flag, type=parse_oversample, default={},
                                help="classes drawn more often, e.g. disgust=4"
                                + (" (their synthetic rows)" if "synthetic" in f.name else ""))
        else:
            default = getattr(RunConfig("", ""), f.name)
            if isinstance(default, bool):
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
            else:
                parser.add_argument(flag, type=type(default), default=default,
                                    choices=choices.get(f.name))
    return RunConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    train_classifier(parse_args(argv))


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------------------------------------
# the downstream experiment: does the synthetic target class (disgust) beat the cheap
# alternatives? The target and the class whose count it is topped up to are the pipeline's
# settings (target_class, top_up_to).

# Each variant: whether the synthetic rows join training, the loss weighting, oversampling.
VARIANTS: dict[str, dict] = {
    "plain": {"synthetic": "exclude"},
    "class_weighted": {"synthetic": "exclude", "class_weighted": True},
    "oversampled": {"synthetic": "exclude", "oversample": "to_top_up"},
    "stargan": {"synthetic": "include"},
    "stargan_weighted": {"synthetic": "include", "class_weighted": True},
    # the top-up, with the real target faces drawn as often as the synthetic ones together
    "stargan_oversampled": {"synthetic": "include", "oversample": "half_real"},
    # the training rows the label audit flagged left out (label_issues)
    "audited": {"synthetic": "exclude", "flagged": "exclude"},
}


def result_keys(target: str) -> tuple[str, ...]:
    """The figures the report tables show, e.g. disgust_f1 for the target disgust."""
    return ("accuracy", "macro_f1", f"{target}_f1", f"{target}_recall", f"{target}_precision")


def variant_config(data: str, out: str, variant: str, model: str, seed: int, target: str,
                   top_up_to: str, **overrides) -> RunConfig:
    """The run of one variant: `oversampled` draws the target class as often as the top-up
    goal (top_up_to's count, as the StarGAN top-up aims at), with the usual flip + affine
    jitter; `stargan_oversampled` draws it as often too, half of the draws real faces and half
    synthetic ones (all real draws where no synthetic row was published)."""
    spec = dict(VARIANTS[variant])
    how = spec.pop("oversample", None)
    if how:
        real, synthetic = training_counts(data)
        goal = target_count(real, target, top_up_to)
        made = synthetic.get(target, 0) if how == "half_real" else 0
        share = goal / 2 if made else goal
        spec["oversample"] = {target: share / max(real[target], 1)}
        if made:
            spec["oversample_synthetic"] = {target: share / made}
    return RunConfig(data=data, out=out, model=model, seed=seed, **spec, **overrides)


def training_counts(data: str | Path) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per class of a published training split: the real ones, the synthetic ones."""
    table = pq.read_table(Path(data) / "train.parquet", columns=["label", "is_synthetic"])
    classes = json.loads(table.schema.metadata[b"fer_data"])["classes"]
    labels = table.column("label").to_numpy()
    synthetic = table.column("is_synthetic").to_numpy(zero_copy_only=False)
    return tuple({c: int(((labels == i) & (synthetic == flag)).sum())
                  for i, c in enumerate(classes)} for flag in (False, True))


def run_record(variant: str, scores: dict, target: str) -> dict:
    """The result file of one run: what the report tables need, and the full metrics."""
    per_class = scores["per_class"][target]
    return {"model": scores["model"], "variant": variant, "seed": scores["seed"],
            "target": target, "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            **{f"{target}_{k}": per_class[k] for k in ("f1", "recall", "precision")},
            "train_rows": scores["train_rows"],
            "synthetic_rows": scores["synthetic_rows"], "generators": scores["generators"],
            "train_counts": scores["train_counts"],
            "train_seconds": scores["train_seconds"], "best_epoch": scores["best_epoch"],
            "device": scores["device"], "metrics": scores}


def spread(values: list[float]) -> float:
    """Sample standard deviation over seeds (0 for a single run)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summary_table(records: list[dict], target: str) -> str:
    """Markdown: mean ± standard deviation over seeds per model and variant."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["variant"]), []).append(r)
    order = {v: i for i, v in enumerate(VARIANTS)}
    keys = result_keys(target)
    lines = ["| model | variant | seeds | train rows (synthetic) | " + " | ".join(
        k.replace("_", " ") for k in keys) + " |",
             "|---|---|---:|---:|" + "---:|" * len(keys)]
    for (model, variant), runs in sorted(groups.items(), key=lambda kv: (kv[0][0],
                                                                         order[kv[0][1]])):
        cells = [f"{np.mean(v):.3f} ± {spread(v):.3f}"
                 for v in ([r[key] for r in runs] for key in keys)]
        lines.append(f"| {model} | {variant} | {len(runs)} | {runs[0]['train_rows']:,} "
                     f"({runs[0]['synthetic_rows']:,}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def training_rows_table(records: list[dict]) -> str:
    """Markdown: training rows per class, real only, with the StarGAN top-up, and without the
    rows the label audit flagged."""
    real = [r for r in records if r["synthetic_rows"] == 0]
    plain = next((r for r in real if r["variant"] != "audited"), real[0] if real else None)
    topped = next((r for r in records if r["synthetic_rows"] > 0), None)
    audited = next((r for r in records if r["variant"] == "audited"), None)
    if plain is None:
        return ""
    classes = list(plain["train_counts"])
    lines = ["| training rows | " + " | ".join(classes) + " | all |",
             "|---|" + "---:|" * (len(classes) + 1)]
    for name, r in (("real", plain), ("real + synthetic", topped),
                    ("real, flagged labels left out", audited)):
        if r is not None:
            counts = [r["train_counts"][c] for c in classes]
            lines.append(f"| {name} | " + " | ".join(f"{n:,}" for n in counts)
                         + f" | {sum(counts):,} |")
    generators = sorted({g for r in records for g in r.get("generators", [])})
    if generators:  # more than one: the StarGAN rows of different runs came from different ones
        lines.append("\nSynthetic rows from generator " + "; ".join(f"`{g}`" for g in generators))
    return "\n".join(lines)


def target_f1_png(records: list[dict], target: str) -> bytes:
    """The target class's F1 per variant: mean with a bar of ± one standard deviation, and
    every seed."""
    models = sorted({r["model"] for r in records})
    fig, ax = pyplot().subplots(figsize=(7, 3.4), dpi=100)
    for m, model in enumerate(models):
        for i, variant in enumerate(VARIANTS):
            values = [r[f"{target}_f1"] for r in records
                      if r["model"] == model and r["variant"] == variant]
            if not values:
                continue
            x = i + (m - (len(models) - 1) / 2) * 0.3
            ax.errorbar(x, np.mean(values), yerr=spread(values), fmt="o", capsize=4,
                        color=f"C{m}", label=model if i == 0 else None)
            ax.plot([x] * len(values), values, ".", color=f"C{m}", alpha=0.4)
    ax.set_xticks(range(len(VARIANTS)), list(VARIANTS), rotation=15)
    ax.set_ylabel(f"{target} F1 (real test split)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return figure_png(fig)


def run_experiment(data: str | Path, results: Path, runs: Path, target: str, top_up_to: str,
                   model: str = "cnn", variants: list[str] | None = None,
                   seeds: tuple[int, ...] = (0, 1, 2), max_runs: int = 0,
                   log: Callable[[str], None] = print, **overrides) -> list[dict]:
    """Train every variant x seed not yet in `results` (one JSON per run, so an interrupted
    grid continues where it stopped; seed-major, so every variant has a first seed before any
    has a second), then return all records there. `runs` holds the run folders. A synthetic
    variant's result made with other synthetic rows than `data` now holds (another generator)
    is stale and runs again."""
    results.mkdir(parents=True, exist_ok=True)
    generators = published_generators(data)
    done = 0
    for seed in seeds:
        for variant in variants or list(VARIANTS):
            path = results / f"{model}_{variant}_seed{seed}.json"
            stale = (path.exists() and VARIANTS[variant]["synthetic"] == "include"
                     and json.loads(path.read_text())["generators"] != generators)
            if (path.exists() and not stale) or (max_runs and done >= max_runs):
                continue
            log(f"== {path.stem}" + (" (stale: made with another generator)" if stale else ""))
            config = variant_config(str(data), str(runs / path.stem), variant, model, seed,
                                    target, top_up_to, **overrides)
            scores = train_classifier(config, log=lambda m: log("  " + m))
            storage.atomic_write_bytes(path, json.dumps(run_record(variant, scores, target),
                                                        indent=2).encode())
            done += 1
    return [json.loads(p.read_text()) for p in sorted(results.glob("*_seed*.json"))]
