"""`expression_judge`, the independent classifier that judges synthetic faces, and
`vit_baseline`, the downstream proof on demand (not part of `make run`)."""

from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from fer_data.classifier import FitOptions
from fer_data.defs.executor import GPU_STEP_TAGS
from fer_data.defs.resources import PipelineSettings, StorageResource
from fer_data.evaluate import RunConfig, judge_dir, split_faces, train_classifier, train_judge
from fer_data.previews import markdown_image


class JudgeConfig(Config):
    epochs: int = Field(10, description="Training epochs (about 1.5 min each on 28k faces, "
                        "2 CPU cores).")
    max_minutes: float = Field(15.0, description="Stop training after this many minutes.")
    class_weight_power: float = Field(0.5, description="Loss weights: (inverse class "
                                      "frequency) ** power; 1 weighs classes equally, 0.5 "
                                      "halfway (disgust 3.1x, happy 0.75x on FER2013).")
    min_steps: int = Field(400, description="At least this many training steps: a small "
                           "(demo) set gets more epochs.")
    seed: int = Field(0, description="Seeds weights, batch order and augmentation.")
    device: str = Field("cpu", description="cpu or cuda.")


@asset(
    deps=["splits", "face_crops"],
    group_name="evaluate",
    kinds={"pytorch"},
    owners=["team:fer-data"],
    code_version="1",
    automation_condition=AutomationCondition.eager(),
)
def expression_judge(context: AssetExecutionContext, config: JudgeConfig,
                     storage_resource: StorageResource,
                     settings: PipelineSettings) -> MaterializeResult:
    """A compact CNN trained on the real training split only (never val, test or synthetic
    faces), class-weighted, best epoch on val: the independent judge of synthetic faces."""
    layout = storage_resource.layout()
    data = split_faces(layout, settings.class_set)
    options = FitOptions(epochs=config.epochs, max_minutes=config.max_minutes,
                         class_weighted=True, class_weight_power=config.class_weight_power,
                         min_steps=config.min_steps, seed=config.seed, device=config.device)
    result = train_judge(data, judge_dir(layout), options, log=context.log.info)
    test = result.test
    recall = {k: round(v["recall"], 4) for k, v in test["per_class"].items()}
    return MaterializeResult(metadata={
        "test_accuracy": round(test["accuracy"], 4),
        "test_macro_f1": round(test["macro_f1"], 4),
        "test_recall": MetadataValue.json(recall),
        "minutes": round(result.seconds / 60, 1),
        "best_epoch": test["best_epoch"],
        "rows": MetadataValue.json({s: len(d) for s, d in data.items()}),
        "confusion_matrix": MetadataValue.md(markdown_image(
            (result.path.parent / "confusion_matrix.png").read_bytes(), "confusion matrix")),
        "model": MetadataValue.path(str(result.path)),
    })


class VitBaselineConfig(Config):
    epochs: int = Field(30, description="Epochs per variant.")
    max_steps: int = Field(0, description="Stop each variant after this many steps (0 = all).")
    batch_size: int = Field(128, description="Batch size.")
    device: str = Field("auto", description="auto, cpu or cuda.")


@asset(
    deps=["curated_dataset"],
    group_name="evaluate",
    kinds={"pytorch"},
    owners=["team:fer-data"],
    code_version="2",
    pool="gpu",
    op_tags=GPU_STEP_TAGS,
)
def vit_baseline(context: AssetExecutionContext, config: VitBaselineConfig,
                 storage_resource: StorageResource,
                 settings: PipelineSettings) -> MaterializeResult:
    """ViT-Tiny trained with and without the synthetic faces, compared on the real test split."""
    layout = storage_resource.layout()
    curated = Path(str(layout.curated_dir)) / settings.class_set
    runs = Path(str(layout.storage_dir)) / "vit_baseline"
    results = {}
    for variant in ("exclude", "include"):
        run = RunConfig(data=str(curated), out=str(runs / variant), model="vit",
                        synthetic=variant, epochs=config.epochs, max_steps=config.max_steps,
                        batch_size=config.batch_size, device=config.device,
                        patch_size=settings.vit_patch_size)
        results[variant] = train_classifier(run, log=context.log.info)
    table = ("| synthetic | train rows | accuracy | macro-F1 | disgust F1 |\n"
             "|---|---:|---:|---:|---:|\n")
    table += "\n".join(f"| {v} | {r['train_rows']:,} | {r['accuracy']:.4f} | "
                       f"{r['macro_f1']:.4f} | {r['disgust_f1']:.4f} |" for v, r in results.items())
    return MaterializeResult(metadata={
        "comparison": MetadataValue.md(table),
        "confusion_with_synthetic": MetadataValue.md(markdown_image(
            (runs / "include" / "confusion_matrix.png").read_bytes(), "confusion matrix")),
        "runs": MetadataValue.path(str(runs)),
    })
