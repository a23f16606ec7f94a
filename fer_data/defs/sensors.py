"""A sensor that watches raw/: a new or changed dataset folder requests a run of its
partition; the eager automation conditions downstream then refresh curated/ on their own
(both need the Dagster daemon: `make ui` runs one)."""

import json

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from fer_data.datasets import DATASETS
from fer_data.defs.resources import StorageResource
from fer_data.ingest import folder_fingerprint


def changed_datasets(storage_resource: StorageResource, cursor: str | None
                     ) -> tuple[list[str], str]:
    """Datasets whose raw folder fingerprint differs from the cursor's, and the new cursor."""
    raw_dir = storage_resource.layout().raw_dir
    seen = json.loads(cursor) if cursor else {}
    now = {d: folder_fingerprint(raw_dir / d) for d in DATASETS}
    changed = [d for d in DATASETS if now[d] != seen.get(d) and now[d] != "absent"]
    return changed, json.dumps(now, sort_keys=True)


@sensor(
    asset_selection=AssetSelection.assets("raw_images"),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Requests raw_images for each dataset folder in raw/ that appeared or changed.",
)
def raw_folder_sensor(context: SensorEvaluationContext,
                      storage_resource: StorageResource) -> SensorResult:
    changed, cursor = changed_datasets(storage_resource, context.cursor)
    return SensorResult(
        run_requests=[RunRequest(partition_key=d, run_key=f"{d}:{json.loads(cursor)[d]}")
                      for d in changed],
        cursor=cursor,
    )
