"""Train a ViT-Tiny expression classifier straight from a curated dataset, evaluate on the real
test split.

    python -m fer_data.train_vit --data curated/fer7 --out runs/vit --epochs 30
    python -m fer_data.train_vit --data curated/fer7 --synthetic exclude ...

Writes metrics.json (accuracy, macro-F1, per-class precision/recall/F1), confusion_matrix.png,
config.json and model.pt into the run folder. Built only on CuratedFaces and torch/torchvision.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models.vision_transformer import VisionTransformer
from torchvision.transforms import v2

from fer_data.torch_dataset import CuratedFaces


@dataclass
class VitConfig:
    data: str
    out: str
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    mix: Literal["none", "mixup", "cutmix", "both"] = "cutmix"
    class_weighted: bool = False
    synthetic: Literal["include", "exclude"] = "include"
    patch_size: int = 6  # 48 px -> 8x8 patches
    hidden_dim: int = 192  # ViT-Tiny: 192 wide, 12 layers, 3 heads, MLP 768
    num_layers: int = 12
    num_heads: int = 3
    max_steps: int = 0  # stop after this many optimizer steps (0 = run all epochs)
    device: str = "auto"
    workers: int = 2
    seed: int = 0


def vit_tiny(image_size: int, num_classes: int, config: VitConfig) -> VisionTransformer:
    """torchvision's VisionTransformer with ViT-Tiny settings and a 1-channel patch embedding
    (the faces are gray); no pretrained weights."""
    model = VisionTransformer(image_size=image_size, patch_size=config.patch_size,
                              num_layers=config.num_layers, num_heads=config.num_heads,
                              hidden_dim=config.hidden_dim, mlp_dim=4 * config.hidden_dim,
                              num_classes=num_classes)
    model.conv_proj = nn.Conv2d(1, config.hidden_dim, kernel_size=config.patch_size,
                                stride=config.patch_size)
    return model


def transforms(train: bool) -> v2.Compose:
    steps = [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    if train:
        steps = [v2.RandomHorizontalFlip(),
                 v2.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.92, 1.08)),
                 *steps]
    return v2.Compose([*steps, v2.Normalize([0.5], [0.5])])


def batch_mixer(kind: str, num_classes: int):
    """CutMix / MixUp on a whole batch (the source project found CutMix and FMix best)."""
    if kind == "none":
        return None
    options = {"mixup": [v2.MixUp(num_classes=num_classes)],
               "cutmix": [v2.CutMix(num_classes=num_classes)],
               "both": [v2.MixUp(num_classes=num_classes), v2.CutMix(num_classes=num_classes)]}
    return v2.RandomChoice(options[kind])


def cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def predict(model: nn.Module, data: CuratedFaces, device, batch_size: int = 256,
            workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
    preds, labels = [], []
    for images, y in loader:
        preds.append(model(images.to(device)).argmax(1).cpu())
        labels.append(y)
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def metrics(pred: np.ndarray, true: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro-F1 over classes present in the test split, per-class P/R/F1, confusion
    matrix (rows = true class)."""
    k = len(classes)
    cm = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    per_class, f1s = {}, []
    for i, name in enumerate(classes):
        tp, fp, fn = cm[i, i], cm[:, i].sum() - cm[i, i], cm[i, :].sum() - cm[i, i]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall),
                           "f1": float(f1), "support": int(cm[i, :].sum())}
        if cm[i, :].sum():
            f1s.append(f1)
    return {
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "disgust_f1": per_class.get("disgust", {}).get("f1", float("nan")),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "test_rows": int(cm.sum()),
    }


def confusion_png(cm: list[list[int]], classes: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8), dpi=100)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def train_vit(config: VitConfig, log=print) -> dict:
    """Train, evaluate on the real test split, write the run folder; returns the metrics."""
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set = CuratedFaces(config.data, "train", transform=transforms(True),
                             synthetic=config.synthetic == "include")
    test_set = CuratedFaces(config.data, "test", transform=transforms(False), synthetic=False)
    classes = train_set.classes
    size = np.asarray(train_set[0][0]).shape[-1]
    model = vit_tiny(size, len(classes), config).to(device)
    weight = train_set.class_weights().to(device) if config.class_weighted else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=True,
                        num_workers=config.workers,
                        generator=torch.Generator().manual_seed(config.seed),
                        persistent_workers=config.workers > 0)
    total = len(loader) * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    warmup = int(config.warmup_epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_lr(s, total, min(warmup, total // 5)))
    mixer = batch_mixer(config.mix, len(classes))
    step, started = 0, time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        running = 0.0
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            if mixer is not None:
                images, labels = mixer(images, labels)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
            step += 1
            if step >= total:
                break
        elapsed = time.perf_counter() - started
        eta = elapsed / step * (total - step)
        log(f"epoch {epoch + 1}/{config.epochs} step {step}/{total} "
            f"loss {running / max(1, len(loader)):.4f} | {elapsed:.0f}s, eta {eta:.0f}s")
        if step >= total:
            break
    pred, true = predict(model, test_set, device)
    result = metrics(pred, true, classes)
    result.update(train_rows=len(train_set), synthetic=config.synthetic, steps=step,
                  seconds=round(time.perf_counter() - started, 1), device=str(device))
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    (out / "confusion_matrix.png").write_bytes(confusion_png(result["confusion_matrix"],
                                                             classes))
    torch.save({"model": model.state_dict(), "classes": classes, "config": asdict(config)},
               out / "model.pt")
    log(f"test accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f}, "
        f"disgust F1 {result['disgust_f1']:.4f} -> {out}")
    return result


CHOICES = {"mix": ("none", "mixup", "cutmix", "both"), "synthetic": ("include", "exclude")}


def parse_args(argv: list[str] | None = None) -> VitConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in asdict(VitConfig(data="", out="")).items():
        flag = "--" + name.replace("_", "-")
        if name in ("data", "out"):
            parser.add_argument(flag, required=True)
        elif isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value, choices=CHOICES.get(name))
    return VitConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    train_vit(parse_args(argv))


if __name__ == "__main__":
    main()
