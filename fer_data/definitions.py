"""The Dagster code location: composes the stages' assets, the resources and the sensor.

Dagster calls `defs()` when it loads the code location, not at import, so the executor
(chosen by FER_EXECUTOR, see defs/executor.py) is read from the environment then."""

from dagster import Definitions, definitions, load_assets_from_modules

from fer_data.defs import (
    augment,
    dedup,
    evaluate,
    faces,
    ingest,
    label_audit,
    publish,
    splits,
)
from fer_data.defs.executor import executor_from_env
from fer_data.defs.resources import RESOURCES
from fer_data.defs.sensors import raw_folder_sensor

STAGES = [ingest, faces, dedup, splits, label_audit, evaluate, augment, publish]


@definitions
def defs() -> Definitions:
    return Definitions(
        assets=load_assets_from_modules(STAGES),
        resources=RESOURCES,
        sensors=[raw_folder_sensor],
        executor=executor_from_env(),
    )
