"""`face_crops`: the face of every raw image, aligned, gray, at a fixed size."""

import math
from collections import Counter
from typing import Literal

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from fer_data import storage
from fer_data.datasets import face_policies
from fer_data.defs.metadata import counts_table, speed, stopwatch
from fer_data.defs.partitions import dataset_partitions
from fer_data.defs.resources import FaceDetector, PipelineSettings, StorageResource
from fer_data.faces import CropOptions, build_face_table
from fer_data.images import decode_png
from fer_data.previews import sheet_markdown


class FaceConfig(Config):
    margin: float = Field(
        CropOptions.margin, description="Extra context around the face box, per side, as a "
        "fraction of the box.")
    policy: dict[str, list[str]] = Field(
        default_factory=face_policies,
        description="Per dataset, detectors to try in order (fallback chain), or ['none'] for "
        "datasets that are already face crops.")
    quality_detector: Literal["haar", "off"] = Field(
        "off", description="For already-cropped faces: a detector that only sets the "
        "face_found flag (off by default: on real 48x48 crops it mostly flags good faces).")
    precropped_max_side: int = Field(
        CropOptions.precropped_max_side, description="Images no larger than this on either side "
        "are already face crops (FER2013, CK+48, 48x48 folder sets): passed through unchanged, "
        "only resized to face_size, whatever the dataset's policy.")
    min_detection_rate: float = Field(0.9, description="Blocking check floor for datasets "
                                      "that run a detector.")
    batch_rows: int = Field(256, description="Raw rows processed per batch (bounds memory).")


@asset(
    partitions_def=dataset_partitions,
    deps=["raw_images"],
    group_name="faces",
    kinds={"pytorch", "opencv", "parquet"},
    owners=["team:fer-data"],
    code_version="4",
    automation_condition=AutomationCondition.eager(),
    check_specs=[AssetCheckSpec("detection_rate", asset="face_crops", blocking=True,
                                description="share of images with a face, at or above the "
                                "configured floor (blocking only where a detector runs)")],
)
def face_crops(context: AssetExecutionContext, config: FaceConfig,
               storage_resource: StorageResource, face_detector: FaceDetector,
               settings: PipelineSettings) -> MaterializeResult:
    """Aligned gray face crops of one dataset, with box, landmarks, detector score and pHash,
    cut at the dataset's own box where it gives one (RAF-DB, ExpW, AffectNet); images without
    a face become `no_face` rejects."""
    dataset = context.partition_key
    layout = storage_resource.layout()
    names = [n for n in config.policy.get(dataset, ["mtcnn", "haar"]) if n != "none"]
    detectors = [face_detector.get(n) for n in names]
    quality = face_detector.get("haar_quality") if config.quality_detector == "haar" else None
    with stopwatch() as timing:
        result = build_face_table(
            storage.iter_batches(layout.table("raw_images", dataset), config.batch_rows),
            detectors, CropOptions(settings.face_size, config.margin, config.precropped_max_side),
            quality)
    path = storage.write_table(result.faces, layout.table("face_crops", dataset))
    storage.write_table(result.rejects, layout.rejects("face_crops", dataset))

    rate = result.detection_rate
    gated = bool(detectors) and result.inputs > 0
    passed = not gated or rate >= config.min_detection_rate
    verdict = (f"{dataset}: a face was found in {rate:.1%} of {result.inputs} images, "
               f"{'at or above' if passed else 'below'} the floor of "
               f"{config.min_detection_rate:.0%} (face_crops config min_detection_rate); the "
               f"images without one are in the rejects table" if gated
               else f"{dataset}: no detector runs (already face crops)")
    if not passed:
        context.log.error("detection_rate check failed: " + verdict)
    faces = [decode_png(b) for b in result.faces.column("face").to_pylist()[:48]]
    flags = [f for f in result.faces.column("face_found").to_pylist() if f is not None]
    metadata = {
        "dagster/row_count": result.faces.num_rows,
        "detectors": ", ".join(names) or "none (already face crops)",
        "inputs": result.inputs,
        "faces": result.faces.num_rows,
        "detection_rate": _finite(rate),
        "mean_score": _finite(result.mean_score()),
        **speed(timing["seconds"], result.inputs),
        "by_detector": counts_table(dict(Counter(result.faces.column("detector")
                                                 .to_pylist())), "detector"),
        "face_found_flag_rate": _finite(sum(flags) / len(flags)) if flags else None,
        "rejects_by_reason": counts_table(dict(Counter(result.rejects.column("reason")
                                                       .to_pylist())), "reason"),
        "preview": MetadataValue.md(sheet_markdown(faces, f"{dataset} face crops")),
        "table": MetadataValue.path(str(path)),
    }
    return MaterializeResult(
        metadata={k: v for k, v in metadata.items() if v is not None},
        check_results=[AssetCheckResult(
            check_name="detection_rate", passed=passed, description=verdict,
            severity=AssetCheckSeverity.ERROR if gated else AssetCheckSeverity.WARN,
            metadata={"rate": _finite(rate) if result.inputs else "no inputs",
                      "floor": config.min_detection_rate,
                      "gated": gated})],
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)
