"""`curated_dataset`: the published class sets (curated/fer7, ...) that training code reads."""

import json
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

from fer_data import storage
from fer_data.artefacts import load_face_crops, synthetic_report_path
from fer_data.defs.resources import PipelineSettings, StorageResource
from fer_data.labels import CLASS_SETS, class_names
from fer_data.previews import markdown_image
from fer_data.publish import PUBLISH_COLUMNS, PublishOptions, card_facts, publish, publish_rows
from fer_data.storage import ALL


class PublishConfig(Config):
    extra_class_sets: list[str] = Field([], description=f"Class sets to publish besides the "
                                        f"pipeline's class_set (settings), from "
                                        f"{sorted(CLASS_SETS)}.")
    calm: Literal["neutral", "drop"] = Field(
        PublishOptions.calm, description="RAVDESS calm: map to neutral or drop.")
    label_audit: Literal["keep", "drop", "relabel"] = Field(
        PublishOptions.label_audit, description="Training rows the label audit "
        "(label_issues) flagged: keep them (label_quality says how doubtful), drop them, or "
        "give them the suggested label.")


@asset(
    deps=["face_crops", "splits", "face_index", "synthetic_faces", "label_issues"],
    group_name="publish",
    kinds={"parquet"},
    owners=["team:fer-data"],
    code_version="4",
    automation_condition=AutomationCondition.eager(),
)
def curated_dataset(context: AssetExecutionContext, config: PublishConfig,
                    storage_resource: StorageResource,
                    settings: PipelineSettings) -> MaterializeResult:
    """The published datasets (curated/fer7, ...): train/val/test Parquet, dataset card,
    class balance plot and sample grid."""
    layout = storage_resource.layout()
    faces, _ = load_face_crops(layout, PUBLISH_COLUMNS)
    split_table = storage.read_table(layout.table("splits", ALL))
    synthetic_path = layout.table("synthetic_faces", ALL)
    synthetic = storage.read_table(synthetic_path) if synthetic_path.exists() else None
    audit_path = layout.table("label_issues", ALL)
    audit = storage.read_table(audit_path) if audit_path.exists() else None
    rows = publish_rows(faces, split_table, synthetic, audit)
    index = storage.read_table(layout.table("face_index", ALL),
                               columns=["image_id", "dataset", "drop_reason", "duplicate_of"])
    report = synthetic_report_path(layout)
    extra = {report.name: report.read_bytes()} if synthetic is not None and report.exists() \
        else {}
    card = card_facts(rows, index, split_table, synthetic,
                      json.loads(extra[report.name]) if extra else None, audit)
    metadata = {}
    for name in dict.fromkeys([settings.class_set, *config.extra_class_sets]):
        class_names(name)  # an unknown name fails here, before anything is written
        result = publish(rows, layout.curated_dir, PublishOptions(
            name, calm=config.calm, label_audit=config.label_audit), card,
                         extra)
        metadata[f"{name}_rows"] = MetadataValue.json(
            {s: sum(c.values()) for s, c in result.counts.items()})
        metadata[f"{name}_path"] = MetadataValue.path(str(result.folder))
        for figure in ("class_balance", "samples"):
            metadata[f"{name}_{figure}"] = MetadataValue.md(markdown_image(
                (result.folder / f"{figure}.png").read_bytes(), f"{name} {figure}"))
    metadata["config"] = MetadataValue.json(json.loads(config.model_dump_json()))
    metadata["dagster/row_count"] = rows.num_rows
    return MaterializeResult(metadata=metadata)
