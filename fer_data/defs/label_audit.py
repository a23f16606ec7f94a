"""`label_issues`: the label audit of the training split (fer_data.label_audit)."""

from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from fer_data import storage
from fer_data.artefacts import load_face_crops, training_split
from fer_data.defs.resources import PipelineSettings, StorageResource
from fer_data.images import decode_png
from fer_data.label_audit import AuditOptions, audit_labels, index_rivals, suspects_png
from fer_data.previews import markdown_image
from fer_data.storage import ALL

SUSPECTS_SHOWN = 48


class AuditConfig(Config):
    folds: int = Field(AuditOptions.folds, description="Folds of the training split: each "
                       "face is scored by a model trained on the others.")
    epochs: int = Field(AuditOptions.epochs, description="Compact-CNN epochs per fold (4 folds "
                        "x 5 epochs: about 25 minutes on 26k faces, 2 CPU cores).")
    min_steps: int = Field(60, description="At least this many training steps per fold: a "
                           "small (demo) set gets more epochs.")
    filter_by: str = Field(AuditOptions.filter_by, description="cleanlab find_label_issues "
                           "filter: prune_by_noise_rate, prune_by_class, both, "
                           "confident_learning, predicted_neq_given.")
    seed: int = Field(AuditOptions.seed, description="Seeds the folds and the models.")
    device: str = Field(AuditOptions.device, description="cpu or cuda.")


@asset(
    deps=["splits", "face_crops", "face_index"],
    group_name="evaluate",
    kinds={"pytorch", "parquet"},
    owners=["team:fer-data"],
    code_version="2",
    automation_condition=AutomationCondition.eager(),
)
def label_issues(context: AssetExecutionContext, config: AuditConfig,
                 storage_resource: StorageResource,
                 settings: PipelineSettings) -> MaterializeResult:
    """Which training labels are probably wrong: out-of-fold probabilities of the compact CNN
    (val and test never touched) ranked by cleanlab. One row per training face, the flagged
    ones with the label the model suggests (and every kept face whose duplicate cluster had
    copies with a label the model prefers); curated_dataset publishes its label_quality."""
    layout = storage_resource.layout()
    faces, _ = load_face_crops(layout, ["image_id", "dataset", "label", "subject_id", "face"])
    rows, tensors = training_split(faces, storage.read_table(layout.table("splits", ALL)),
                                   settings.class_set)
    options = AuditOptions(folds=config.folds, epochs=config.epochs,
                           min_steps=config.min_steps, filter_by=config.filter_by,
                           seed=config.seed, device=config.device)
    index = storage.read_table(layout.table("face_index", ALL),
                               columns=["image_id", "cluster_id", "label", "drop_reason"])
    rivals = index_rivals(index, rows.column("image_id").to_pylist(), settings.class_set)
    audit = audit_labels(tensors, rows, options, log=context.log.info, rivals=rivals)
    path = storage.write_table(audit.table, layout.table("label_issues", ALL))
    suspects = audit.flagged().slice(0, SUSPECTS_SHOWN)
    position = {i: n for n, i in enumerate(rows.column("image_id").to_pylist())}
    shown = [decode_png(rows.column("face")[position[i]].as_py())
             for i in suspects.column("image_id").to_pylist()]
    captions = [f"{a}\n> {b}" for a, b in zip(suspects.column("label").to_pylist(),
                                              suspects.column("suggested_label").to_pylist(),
                                              strict=True)]
    flagged = audit.table.column("flagged").to_pylist()
    return MaterializeResult(metadata={
        "audited": len(flagged),
        "flagged": sum(flagged),
        "flagged_per_class": MetadataValue.json(audit.flagged_per_class()),
        "minutes": round(audit.seconds / 60, 1),
        "most_suspect": MetadataValue.md(markdown_image(
            suspects_png(shown, captions), "most suspect labels: given > suggested")),
        "path": MetadataValue.path(str(path)),
        "dagster/row_count": len(flagged),
    })
