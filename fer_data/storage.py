"""Where the pipeline reads and writes: local folders or any fsspec URL (s3://, gs://, ...).

Every table lives at `<storage root>/<asset>/<partition>.parquet`. Writes are atomic: on a local
disk the file is written beside its target and renamed over it; on an object store a single PUT
is already all-or-nothing.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

DEFAULT_RAW_DIR = "raw"
ALL = "all"  # the "partition" name of whole-collection tables (face_index, splits, ...)
DEFAULT_CURATED_DIR = "curated"


def as_path(location: str | os.PathLike) -> UPath:
    """A local path or fsspec URL as a path object (PosixUPath for local files)."""
    return UPath(location)


def is_local(path: UPath) -> bool:
    return isinstance(path, Path) or getattr(path, "protocol", "") in ("", "file", "local")


@dataclass(frozen=True)
class StorageLayout:
    """The three roots of a deployment, resolved once per run."""

    raw_dir: UPath
    storage_dir: UPath
    curated_dir: UPath

    @classmethod
    def from_env(
        cls,
        raw_dir: str | None = None,
        storage_dir: str | None = None,
        curated_dir: str | None = None,
    ) -> "StorageLayout":
        """Explicit values win; then FER_RAW_DIR / FER_STORAGE_DIR / FER_CURATED_DIR; then defaults
        (raw/, $DAGSTER_HOME/storage, curated/)."""
        env = os.environ
        dagster_home = env.get("DAGSTER_HOME", ".dagster")
        return cls(
            raw_dir=as_path(raw_dir or env.get("FER_RAW_DIR") or DEFAULT_RAW_DIR),
            storage_dir=as_path(
                storage_dir or env.get("FER_STORAGE_DIR") or os.path.join(dagster_home, "storage")
            ),
            curated_dir=as_path(curated_dir or env.get("FER_CURATED_DIR") or DEFAULT_CURATED_DIR),
        )

    def table(self, asset: str, partition: str) -> UPath:
        return self.storage_dir / asset / f"{partition}.parquet"

    def rejects(self, asset: str, partition: str) -> UPath:
        return self.storage_dir / "rejects" / asset / f"{partition}.parquet"


def write_table(table: pa.Table, path: UPath, metadata: dict[str, str] | None = None) -> UPath:
    """Write a Parquet file atomically, adding key-value metadata to its schema."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    if is_local(path):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            pq.write_table(table, f, compression="zstd")
    return path


def read_table(path: UPath, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file written by `write_table`."""
    if is_local(path):
        return pq.read_table(Path(path), columns=columns)
    with path.open("rb") as f:
        return pq.read_table(f, columns=columns)


def iter_batches(path: UPath, batch_size: int = 256, columns: list[str] | None = None):
    """Stream a Parquet file in record batches, so big tables never sit in memory whole."""
    if is_local(path):
        yield from pq.ParquetFile(Path(path)).iter_batches(batch_size, columns=columns)
        return
    with path.open("rb") as f:
        yield from pq.ParquetFile(f).iter_batches(batch_size, columns=columns)
