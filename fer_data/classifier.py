"""Expression classifiers over curated faces: a compact CNN (the judge of synthetic faces, and a
fast downstream model), ViT-Tiny, and the one training loop both use.

    data = load_split("curated/fer7", "train")          # uint8 tensors, decoded once
    model = build_model("cnn", data.classes, data.size)
    result = fit(model, data, FitOptions(epochs=12), val=load_split(..., "val"))

Faces stay uint8 in memory (28k faces at 48 px: 65 MB) and are augmented a whole batch at a time
(flip + small affine), so no per-sample PIL decoding or DataLoader workers are needed.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from fer_data.figures import figure_png, pyplot
from fer_data.images import decode_png
from fer_data.storage import SUCCESS, atomic_write_bytes


def inverse_frequency(counts: np.ndarray, power: float = 1.0) -> torch.Tensor:
    """Loss weights (n / (classes * count)) ** power per class, 0 for a class with no rows:
    power 1 weighs every class equally, 0.5 (square root) halfway."""
    counts = np.asarray(counts, dtype=float)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(counts), 0.0)
    return torch.tensor(weights ** power, dtype=torch.float32)


@dataclass(frozen=True)
class FaceTensors:
    """Faces of one split: images (N, 1, S, S) uint8, labels (N,) int64, class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    synthetic: torch.Tensor | None = None  # (N,) bool, where the rows came from a generator

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=len(self.classes))

    def class_weights(self, power: float = 1.0) -> torch.Tensor:
        return inverse_frequency(self.counts(), power)

    def subset(self, rows: np.ndarray | torch.Tensor) -> "FaceTensors":
        rows = torch.as_tensor(rows)
        return FaceTensors(self.images[rows], self.labels[rows], self.classes,
                           None if self.synthetic is None else self.synthetic[rows])


def from_pngs(pngs: list[bytes], labels: list[int], classes: tuple[str, ...],
              synthetic: list[bool] | None = None) -> FaceTensors:
    """Decode gray PNG bytes once into a FaceTensors."""
    pixels = np.stack([decode_png(b) for b in pngs]) if pngs else np.zeros((0, 48, 48), np.uint8)
    return FaceTensors(torch.from_numpy(pixels).unsqueeze(1),
                       torch.tensor(labels, dtype=torch.int64), tuple(classes),
                       None if synthetic is None else torch.tensor(synthetic, dtype=torch.bool))


def load_split(root: str | Path, split: str, synthetic: bool = True,
               flagged: bool = True) -> FaceTensors:
    """One split of a published dataset (curated/<class set>/<split>.parquet); without
    `synthetic` the StarGAN rows left out, without `flagged` the rows whose label the label
    audit flagged."""
    root = Path(root)
    if not (root / SUCCESS).exists():
        raise FileNotFoundError(f"{root} is not a complete curated dataset (no {SUCCESS} "
                                "marker): run the pipeline to publish it")
    table = pq.read_table(root / f"{split}.parquet",
                          columns=["image", "label", "is_synthetic", "label_flagged"])
    classes = tuple(json.loads(table.schema.metadata[b"fer_data"])["classes"])
    if not synthetic:
        table = table.filter(pc.invert(table["is_synthetic"]))
    if not flagged:
        table = table.filter(pc.invert(pc.fill_null(table["label_flagged"], False)))
    return from_pngs([image["bytes"] for image in table.column("image").to_pylist()],
                     table.column("label").to_pylist(), classes,
                     table.column("is_synthetic").to_pylist())


# ---------------------------------------------------------------------------------------------
# models


def conv_block(c_in: int, c_out: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class CompactCNN(nn.Module):
    """A VGG-style CNN for gray faces: four blocks of 3x3 convolutions (width, 2x, 4x, 8x
    channels), each halving the image, then global average pooling and a linear head.
    `features` returns the pooled vector (the judge's feature space for Frechet distances)."""

    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.3):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.blocks = nn.Sequential(
            conv_block(1, widths[0], 2), conv_block(widths[0], widths[1], 2),
            conv_block(widths[1], widths[2], 2), conv_block(widths[2], widths[3], 1))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(widths[3], num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


VIT_PATCH_SIZE = 6  # the default ViT patch side (48 px faces: 8x8 patches); saved with a model


def check_patch_size(image_size: int, patch_size: int) -> None:
    """ViT cuts the face into patch_size squares: the size must divide evenly."""
    if patch_size < 1 or image_size % patch_size:
        fits = [p for p in range(2, 17) if image_size % p == 0]
        raise ValueError(f"face_size {image_size} is not a multiple of vit_patch_size "
                         f"{patch_size}: set face_size to a multiple of {patch_size} (e.g. "
                         f"{48 if patch_size == 6 else patch_size * 8}) or vit_patch_size to one "
                         f"of {fits or 'a divisor of face_size'}")


def vit_tiny(image_size: int, num_classes: int, patch_size: int = VIT_PATCH_SIZE) -> nn.Module:
    """torchvision's VisionTransformer with ViT-Tiny settings (192 wide, 12 layers, 3 heads) and a
    1-channel patch embedding; no pretrained weights."""
    from torchvision.models.vision_transformer import VisionTransformer

    check_patch_size(image_size, patch_size)
    model = VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=12,
                              num_heads=3, hidden_dim=192, mlp_dim=768, num_classes=num_classes)
    model.conv_proj = nn.Conv2d(1, 192, kernel_size=patch_size, stride=patch_size)
    return model


MODELS = ("cnn", "vit")


def build_model(name: Literal["cnn", "vit"], num_classes: int, image_size: int,
                seed: int = 0, patch_size: int = VIT_PATCH_SIZE) -> nn.Module:
    """A freshly initialized model; its weights depend on `seed` only (the global RNG is left
    as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "cnn":
            return CompactCNN(num_classes)
        if name == "vit":
            return vit_tiny(image_size, num_classes, patch_size)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


# ---------------------------------------------------------------------------------------------
# training


@dataclass
class FitOptions:
    epochs: int = 12
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.05  # peak of the one-cycle schedule
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.15
    label_smoothing: float = 0.1
    class_weighted: bool = False  # inverse-frequency loss weights
    # ... raised to this power: 1 weighs classes equally (disgust 20x happy on FER2013), 0.5
    # halfway (disgust 3.1x, happy 0.75x); 1 measured far slower to learn in 10 epochs
    class_weight_power: float = 0.5
    oversample: dict[str, float] = field(default_factory=dict)  # class -> sampling factor
    # ... of the synthetic rows instead, where given (real and generated faces of one class
    # drawn at different rates; `oversample` then applies to the real rows alone)
    oversample_synthetic: dict[str, float] = field(default_factory=dict)
    jitter: bool = True  # random flip + small affine per batch
    mix: Literal["none", "cutmix"] = "none"
    max_minutes: float = 0.0  # stop early once training took this long (0: no limit)
    max_steps: int = 0  # stop after this many optimizer steps (0: all epochs)
    min_steps: int = 0  # at least this many steps: small (demo) sets get more epochs
    seed: int = 0
    device: str = "cpu"
    channels_last: bool = True


@dataclass
class FitResult:
    model: nn.Module  # the weights of the best validation epoch (the last one without val)
    history: list[dict]  # per epoch: epoch, step, minutes, loss, val_accuracy, val_macro_f1
    best_epoch: int
    seconds: float
    steps: int


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 faces -> float in [-1, 1], the range every model here is trained on."""
    return images.float().div_(127.5).sub_(1.0)


def jitter(x: torch.Tensor, rng: torch.Generator, degrees: float = 10.0,
           translate: float = 0.08, scale: float = 0.08) -> torch.Tensor:
    """Random horizontal flip and a small random rotation/scale/shift of every face in a batch,
    in one affine_grid + grid_sample call."""
    n = x.size(0)
    u = torch.rand(n, 4, generator=rng) * 2 - 1
    angle = u[:, 0] * math.radians(degrees)
    s = 1 + u[:, 1] * scale
    flip = torch.where(torch.rand(n, generator=rng) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / s * flip
    theta[:, 0, 1] = -torch.sin(angle) / s
    theta[:, 1, 0] = torch.sin(angle) / s * flip
    theta[:, 1, 1] = torch.cos(angle) / s
    theta[:, :, 2] = u[:, 2:] * translate * 2
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def cutmix(x: torch.Tensor, y: torch.Tensor, num_classes: int, rng: torch.Generator):
    """Paste a random box of a shuffled copy of the batch; labels mixed by area."""
    lam = float(torch.rand(1, generator=rng))  # Beta(1, 1), as in the CutMix paper
    perm = torch.randperm(x.size(0), generator=rng).to(x.device)
    side = x.size(-1)
    cut = int(side * math.sqrt(1 - lam))
    cx, cy = (int(v) for v in torch.randint(side, (2,), generator=rng))
    x1, x2 = max(cx - cut // 2, 0), min(cx + cut // 2, side)
    y1, y2 = max(cy - cut // 2, 0), min(cy + cut // 2, side)
    x = x.clone()
    x[:, :, y1:y2, x1:x2] = x[perm][:, :, y1:y2, x1:x2]
    area = (x2 - x1) * (y2 - y1) / side**2
    onehot = F.one_hot(y, num_classes).float()
    return x, onehot * (1 - area) + onehot[perm] * area


def sampling_weights(data: FaceTensors, oversample: dict[str, float],
                     oversample_synthetic: dict[str, float] | None = None) -> torch.Tensor | None:
    """Per-row draw weights that make each named class `factor` times as frequent; synthetic
    rows take their class's factor from `oversample_synthetic` instead where that is given."""
    if not oversample and not oversample_synthetic:
        return None

    def factors(spec: dict[str, float]) -> torch.Tensor:
        unknown = set(spec) - set(data.classes)
        if unknown:
            raise ValueError(f"oversample: {sorted(unknown)} not in classes {list(data.classes)}")
        factor = torch.ones(len(data.classes))
        for name, value in spec.items():
            factor[data.classes.index(name)] = value
        return factor[data.labels]

    weights = factors(oversample)
    if oversample_synthetic and data.synthetic is not None:
        weights = torch.where(data.synthetic, factors(oversample_synthetic), weights)
    return weights


def batch_size(data: FaceTensors, options: FitOptions) -> int:
    """The configured batch size, but never more than a quarter of the training set, so that a
    small (demo) set still gets several steps an epoch."""
    return max(1, min(options.batch_size, len(data) // 4))


def batches(data: FaceTensors, options: FitOptions, rng: torch.Generator):
    """One epoch of row-index batches: a shuffle, or weighted draws with replacement."""
    weights = sampling_weights(data, options.oversample, options.oversample_synthetic)
    n, size = len(data), batch_size(data, options)
    order = torch.randperm(n, generator=rng) if weights is None else \
        torch.multinomial(weights, n, replacement=True, generator=rng)
    for start in range(0, n - size + 1, size):
        yield order[start:start + size]


def make_optimizer(model: nn.Module, options: FitOptions) -> torch.optim.Optimizer:
    if options.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=options.lr, momentum=0.9, nesterov=True,
                               weight_decay=options.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=options.lr,
                             weight_decay=options.weight_decay)


def one_cycle(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine down to 0: the learning-rate factor at `step`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(total - warmup, 1), 1.0)))


def train_step(model, optimizer, loss_fn, x, y, options: FitOptions, classes: int,
               rng: torch.Generator) -> float:
    x = to_float(x)
    if options.jitter:
        x = jitter(x, rng)
    if options.mix == "cutmix":
        x, y = cutmix(x, y, classes, rng)
    if options.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    loss = loss_fn(model(x.to(options.device)), y.to(options.device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def fit(model: nn.Module, train: FaceTensors, options: FitOptions,
        val: FaceTensors | None = None, log: Callable[[str], None] = print) -> FitResult:
    """Train with a one-cycle schedule over `epochs` (or `max_steps`), evaluate on `val` after
    each epoch and keep the best epoch's weights. Every random draw (order, jitter, mixing,
    dropout) follows `options.seed`; the global RNG is left as it was."""
    if len(train) < 4:
        raise ValueError(f"{len(train)} training faces: too few to train a classifier")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)  # dropout draws from the global generator
        return _fit(model, train, options, val, log)


def _fit(model, train: FaceTensors, options: FitOptions, val: FaceTensors | None,
         log: Callable[[str], None]) -> FitResult:
    rng = torch.Generator().manual_seed(options.seed)
    memory = torch.channels_last if options.channels_last else torch.preserve_format
    model.to(options.device, memory_format=memory)
    weight = train.class_weights(options.class_weight_power).to(options.device) \
        if options.class_weighted else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=options.label_smoothing)
    optimizer = make_optimizer(model, options)
    per_epoch = len(train) // batch_size(train, options)
    epochs = max(options.epochs, math.ceil(options.min_steps / per_epoch))
    total = per_epoch * epochs
    if options.max_steps:
        total = min(total, options.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: one_cycle(s, total, max(1, int(options.warmup_fraction * total))))
    history: list[dict] = []
    best, best_score, best_epoch = None, -1.0, 0
    step, started = 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        for rows in batches(train, options, rng):
            losses.append(train_step(model, optimizer, loss_fn, train.images[rows],
                                     train.labels[rows], options, len(train.classes), rng))
            scheduler.step()
            step += 1
            if step >= total or _over(started, options.max_minutes):
                break
        record = {"epoch": epoch, "step": step, "minutes": (time.perf_counter() - started) / 60,
                  "loss": float(np.mean(losses)) if losses else float("nan")}
        if val is not None and len(val):
            scores = metrics(predict(model, val, options.device), val.labels.numpy(),
                             val.classes)
            record.update(val_accuracy=scores["accuracy"], val_macro_f1=scores["macro_f1"])
            if scores["accuracy"] > best_score:
                best, best_score, best_epoch = copy.deepcopy(model.state_dict()), \
                    scores["accuracy"], epoch
        history.append(record)
        log(f"epoch {epoch}/{epochs} step {step}/{total} loss {record['loss']:.4f}"
            + (f" val accuracy {record['val_accuracy']:.4f}" if "val_accuracy" in record else "")
            + f" | {record['minutes']:.1f} min")
        if step >= total or _over(started, options.max_minutes):
            break
    if best is not None:
        model.load_state_dict(best)
    else:
        best_epoch = len(history)
    model.eval()
    return FitResult(model, history, best_epoch, time.perf_counter() - started, step)


def _over(started: float, max_minutes: float) -> bool:
    return max_minutes > 0 and time.perf_counter() - started > 60 * max_minutes


# ---------------------------------------------------------------------------------------------
# inference and scores


@torch.no_grad()
def predict_proba(model: nn.Module, images: torch.Tensor, device: str = "cpu",
                  batch_size: int = 512) -> torch.Tensor:
    """Softmax probabilities (N, classes) for uint8 faces (N, 1, S, S), averaged over the face
    and its mirror image (faces are left-right symmetric in meaning; about +1 point on FER2013)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = to_float(images[i:i + batch_size]).to(device)
        p = torch.softmax(model(x), 1) + torch.softmax(model(torch.flip(x, dims=[3])), 1)
        out.append((p / 2).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def predict(model: nn.Module, data: FaceTensors, device: str = "cpu") -> np.ndarray:
    return predict_proba(model, data.images, device).argmax(1).numpy()


def metrics(pred: np.ndarray, true: np.ndarray, classes: tuple[str, ...] | list[str]) -> dict:
    """Accuracy, macro-F1 over classes present in `true`, per-class P/R/F1, confusion matrix
    (rows = true class)."""
    k = len(classes)
    cm = np.bincount(np.asarray(true) * k + np.asarray(pred), minlength=k * k).reshape(k, k)
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
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "test_rows": int(cm.sum()),
    }


def confusion_png(cm: list[list[int]], classes: tuple[str, ...] | list[str]) -> bytes:
    """The confusion matrix as a PNG: counts, shaded by each true class's share."""
    plt = pyplot()
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
    return figure_png(fig)


def save_model(path: Path, model: nn.Module, name: str, classes: tuple[str, ...],
               image_size: int, extra: dict | None = None,
               patch_size: int = VIT_PATCH_SIZE) -> Path:
    """Weights plus what is needed to rebuild the model (a ViT's patch size too), written
    atomically."""
    buf = io.BytesIO()
    torch.save({"model": name, "classes": list(classes), "image_size": image_size,
                "patch_size": patch_size, "state": model.state_dict(), **(extra or {})}, buf)
    return atomic_write_bytes(Path(path), buf.getvalue())


def load_model(path: Path, device: str = "cpu") -> tuple[nn.Module, tuple[str, ...], dict]:
    state = torch.load(path, map_location=device, weights_only=True)
    model = build_model(state["model"], len(state["classes"]), state["image_size"],
                        patch_size=state.get("patch_size", VIT_PATCH_SIZE))
    model.load_state_dict(state["state"])
    model.to(device).eval()
    return model, tuple(state["classes"]), state
