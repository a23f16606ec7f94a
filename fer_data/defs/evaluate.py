"""`expression_judge`, the independent classifier that judges synthetic faces, and
`augmentation_experiment`, the downstream experiment on demand (not part of `make run`)."""

from typing import Literal

from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from fer_data.artefacts import experiment_dir, judge_dir, published_dir, split_faces
from fer_data.classifier import FitOptions
from fer_data.defs.executor import GPU_STEP_TAGS
from fer_data.defs.resources import PipelineSettings, StorageResource
from fer_data.evaluate import (
    VARIANTS,
    run_experiment,
    summary_table,
    target_f1_png,
    training_rows_table,
)
from fer_data.judge import train_judge
from fer_data.previews import markdown_image


class JudgeConfig(Config):
    epochs: int = Field(10, description="Training epochs (about 1.5 min each on 28k faces, "
                        "2 CPU cores).")
    max_minutes: float = Field(
        FitOptions.max_minutes, description="Cut training after this many minutes (0: none; 10 "
        "epochs take about 14.5 minutes on 2 idle cores, and an epoch budget keeps the judge the "
        "same however busy the machine).")
    class_weight_power: float = Field(FitOptions.class_weight_power,
                                      description="Loss weights: (inverse class frequency) ** "
                                      "power; 1 weighs classes equally, 0.5 halfway (disgust "
                                      "3.1x, happy 0.75x on FER2013).")
    min_steps: int = Field(400, description="At least this many training steps: a small "
                           "(demo) set gets more epochs.")
    seed: int = Field(FitOptions.seed, description="Seeds weights, batch order and augmentation.")
    device: str = Field(FitOptions.device, description="cpu or cuda.")


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


class ExperimentConfig(Config):
    model: Literal["cnn", "vit"] = Field("cnn", description="cnn: the compact CNN (about 15 "
                                         "minutes a run on 2 CPU cores); vit: ViT-Tiny (GPU).")
    seeds: list[int] = Field([0, 1, 2], description="Seeds per variant.")
    variants: list[str] = Field(list(VARIANTS), description=f"From {list(VARIANTS)}.")
    epochs: int = Field(0, description="Epochs per run (0: the model's default).")
    max_minutes: float = Field(0.0, description="Cut each run after this many minutes (0: "
                               "no cut; the budget is the epoch count, so results do not "
                               "depend on how busy the machine is).")
    device: str = Field("auto", description="auto, cpu or cuda.")


@asset(
    deps=["curated_dataset"],
    group_name="evaluate",
    kinds={"pytorch"},
    owners=["team:fer-data"],
    code_version="1",
    pool="gpu",
    op_tags=GPU_STEP_TAGS,
)
def augmentation_experiment(context: AssetExecutionContext, config: ExperimentConfig,
                            storage_resource: StorageResource,
                            settings: PipelineSettings) -> MaterializeResult:
    """Does the synthetic target class (disgust) help? Classifiers trained with and without
    the StarGAN top-up and with the cheap alternatives (class weights, oversampling), several
    seeds each, scored on the real test split. Resumes: runs already in storage are not
    repeated."""
    layout = storage_resource.layout()
    folder = experiment_dir(layout)
    records = run_experiment(
        published_dir(layout, settings.class_set), folder / "results", folder / "runs",
        settings.target_class, settings.top_up_to, config.model, config.variants,
        tuple(config.seeds), log=context.log.info,
        epochs=config.epochs, max_minutes=config.max_minutes, device=config.device,
        patch_size=settings.vit_patch_size)
    records = [r for r in records if r["model"] == config.model]
    return MaterializeResult(metadata={
        "comparison": MetadataValue.md(summary_table(records, settings.target_class)),
        "training_rows": MetadataValue.md(training_rows_table(records)),
        "target_f1": MetadataValue.md(markdown_image(
            target_f1_png(records, settings.target_class), f"{settings.target_class} F1")),
        "runs": len(records),
        "results": MetadataValue.path(str(folder / "results")),
    })
