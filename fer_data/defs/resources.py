"""Dagster resources shared by every asset."""


from dagster import ConfigurableResource
from pydantic import Field

from fer_data.storage import StorageLayout


class StorageResource(ConfigurableResource):
    """Where raw data is read and tables and curated datasets are written. Unset fields fall
    back to FER_RAW_DIR / FER_STORAGE_DIR / FER_CURATED_DIR, read when a run starts."""

    raw_dir: str | None = Field(None, description="Raw datasets root (default raw/).")
    storage_dir: str | None = Field(
        None, description="Intermediate tables root, local path or fsspec URL such as s3://... "
        "(default $DAGSTER_HOME/storage).")
    curated_dir: str | None = Field(
        None, description="Published datasets root, local path or fsspec URL (default curated/).")

    def layout(self) -> StorageLayout:
        return StorageLayout.from_env(self.raw_dir, self.storage_dir, self.curated_dir)
