"""The ViT training script end to end on the demo pipeline's published dataset."""

from __future__ import annotations

import json
import math

from fer_data.publish import CLASS_SETS
from fer_data.torch_dataset import CuratedFaces
from fer_data.train_vit import parse_args, train_vit


def test_one_epoch_writes_metrics_confusion_matrix_and_checkpoint(demo_pipeline, tmp_path):
    root, _ = demo_pipeline
    data = root / "curated" / "fer7"
    config = parse_args(["--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                         "--batch-size", "64", "--workers", "0", "--synthetic", "exclude",
                         "--class-weighted"])
    result = train_vit(config, log=lambda m: None)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved.keys() >= {"accuracy", "macro_f1", "disgust_f1", "per_class",
                            "confusion_matrix", "test_rows"}
    assert all(math.isfinite(saved[k]) for k in ("accuracy", "macro_f1", "disgust_f1"))
    assert set(saved["per_class"]) == set(CLASS_SETS["fer7"])
    test_rows = len(CuratedFaces(data, "test", synthetic=False))
    assert sum(map(sum, saved["confusion_matrix"])) == saved["test_rows"] == test_rows
    assert saved["train_rows"] == len(CuratedFaces(data, "train", synthetic=False))
    assert saved["train_rows"] < len(CuratedFaces(data, "train"))  # synthetic rows left out
    assert result["accuracy"] == saved["accuracy"]
    for name in ("confusion_matrix.png", "config.json", "model.pt"):
        assert (tmp_path / "run" / name).stat().st_size > 0
