"""The expression judge: a compact CNN trained on the real training split only, straight after
de-duplication and splitting, that rates what StarGAN makes (hit rate, features for the
Frechet distance) from outside the generator. Its folder: artefacts.judge_dir."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fer_data import storage
from fer_data.classifier import (
    FaceTensors,
    FitOptions,
    build_model,
    confusion_png,
    fit,
    load_model,
    metrics,
    predict,
    predict_proba,
    save_model,
    to_float,
)


@dataclass
class Judge:
    """The judge model and its classes (label order)."""

    model: torch.nn.Module
    classes: tuple[str, ...]

    def probabilities(self, faces: torch.Tensor) -> torch.Tensor:
        """(N, classes) for uint8 faces (N, 1, S, S)."""
        if len(faces) == 0:
            return torch.zeros(0, len(self.classes))
        return predict_proba(self.model, faces)

    @torch.no_grad()
    def features(self, faces: torch.Tensor, batch_size: int = 512) -> np.ndarray:
        """The judge's pooled penultimate features (N, D) of uint8 faces."""
        self.model.eval()
        out = [self.model.features(to_float(faces[i:i + batch_size]))
               for i in range(0, len(faces), batch_size)]
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros((0, 1))


def load_judge(folder: Path) -> tuple[Judge, dict]:
    """The trained judge in `folder` (artefacts.judge_dir) and its test metrics."""
    folder = Path(folder)
    if not (folder / "judge.pt").exists():
        raise FileNotFoundError(f"no judge at {folder}: materialize expression_judge first")
    model, classes, _ = load_model(folder / "judge.pt")
    return Judge(model, classes), json.loads((folder / "metrics.json").read_text())


@dataclass
class JudgeResult:
    path: Path  # the saved model
    test: dict  # metrics on the real test split
    history: list[dict]
    seconds: float


def train_judge(data: dict[str, FaceTensors], out: Path, options: FitOptions,
                log: Callable[[str], None] = print) -> JudgeResult:
    """Train the compact CNN on data["train"] (class-weighted), keep the best epoch on
    data["val"], score data["test"]; save judge.pt and metrics.json into `out`."""
    train = data["train"]
    model = build_model("cnn", len(train.classes), train.size, seed=options.seed)
    result = fit(model, train, options, val=data["val"], log=log)
    test = metrics(predict(result.model, data["test"], options.device),
                   data["test"].labels.numpy(), train.classes)
    test.update(best_epoch=result.best_epoch, seconds=round(result.seconds, 1),
                train_rows=len(train), options=asdict(options))
    out = Path(out)
    path = save_model(out / "judge.pt", result.model, "cnn", train.classes, train.size,
                      {"test_accuracy": test["accuracy"]})
    storage.atomic_write_bytes(out / "metrics.json", json.dumps(
        {**test, "history": result.history}, indent=2).encode())
    storage.atomic_write_bytes(out / "confusion_matrix.png",
                               confusion_png(test["confusion_matrix"], train.classes))
    return JudgeResult(path, test, result.history, result.seconds)


