"""The Dagster code location: composes assets and resources, nothing else."""

from dagster import Definitions, load_assets_from_modules

from fer_data.defs import augment, curate, evaluate, faces, ingest
from fer_data.defs.executor import executor_from_env
from fer_data.defs.faces import FaceDetector
from fer_data.defs.resources import StorageResource
from fer_data.defs.sensors import raw_folder_sensor

defs = Definitions(
    assets=load_assets_from_modules([ingest, faces, curate, augment, evaluate]),
    resources={"storage_resource": StorageResource(), "face_detector": FaceDetector()},
    sensors=[raw_folder_sensor],
    executor=executor_from_env(),
)
