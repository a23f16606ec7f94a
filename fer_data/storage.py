"""Where the pipeline reads and writes: local folders or any fsspec URL (s3://, gs://, ...).

Every table lives at `<storage root>/<asset>/<partition>.parquet`. Writes are atomic: on a local
disk the file is written beside its target and renamed over it; on an object store a single PUT
is already all-or-nothing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

# Defaults are anchored to the project folder (the checkout that `make install` installs in
# editable mode), never to the current directory, so a command run from elsewhere finds them.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SUCCESS = "_SUCCESS"  # written last into a complete published folder
ALL = "all"  # the "partition" name of whole-collection tables (face_index, splits, ...)


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
        """Explicit values win; then FER_RAW_DIR / FER_STORAGE_DIR / FER_CURATED_DIR; then
        <project>/raw, $DAGSTER_HOME/storage (<project>/dagster_home/storage without
        DAGSTER_HOME) and <project>/curated."""
        env = os.environ
        dagster_home = env.get("DAGSTER_HOME") or str(PROJECT_ROOT / "dagster_home")
        return cls(
            raw_dir=as_path(raw_dir or env.get("FER_RAW_DIR") or PROJECT_ROOT / "raw"),
            storage_dir=as_path(
                storage_dir or env.get("FER_STORAGE_DIR") or os.path.join(dagster_home, "storage")
            ),
            curated_dir=as_path(curated_dir or env.get("FER_CURATED_DIR")
                                or PROJECT_ROOT / "curated"),
        )

    def table(self, asset: str, partition: str) -> UPath:
        return self.storage_dir / asset / f"{partition}.parquet"

    def rejects(self, asset: str, partition: str) -> UPath:
        return self.storage_dir / "rejects" / asset / f"{partition}.parquet"


def atomic_write_bytes(path: UPath | Path, data: bytes) -> UPath | Path:
    """Write a file all-or-nothing: on a local disk beside its target, then renamed over it; on
    an object store one PUT, which is already atomic. The one atomic-write routine of the
    project (tables, checkpoints, figures)."""
    if is_local(path):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError as exc:
            raise write_error(target, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.write(data)
    return path


def write_error(target: Path, exc: OSError) -> OSError:
    """What a failed write says: where, why, and that the previous version is untouched."""
    return OSError(exc.errno, f"could not write {target}: {exc.strerror or exc} (a full disk "
                   "or a file-size limit?); the previous version is unchanged and nothing "
                   "partial was left")


def write_table(table: pa.Table, path: UPath, metadata: dict[str, str] | None = None) -> UPath:
    """Write a Parquet file atomically, adding key-value metadata to its schema."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


@contextmanager
def table_writer(path: UPath, table_schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A Parquet file written a batch at a time (a table too large to hold whole), committed
    atomically when the block ends without an error: locally a file beside the target renamed
    over it; on an object store one upload, made only when the writer closes cleanly."""
    if not is_local(path):
        buffer = pa.BufferOutputStream()
        with pq.ParquetWriter(buffer, table_schema, compression="zstd") as writer:
            yield writer
        atomic_write_bytes(path, buffer.getvalue().to_pybytes())
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with pq.ParquetWriter(tmp, table_schema, compression="zstd") as writer:
            yield writer
        os.replace(tmp, target)
    except OSError as exc:
        raise write_error(target, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _remove_versions(final: Path, keep: str) -> None:
    """Versions, links and staging left beside a folder by earlier writes (or killed ones)."""
    for sibling in final.parent.glob(f".{final.name}.*"):
        if sibling.name == keep:
            continue
        if sibling.is_symlink() or sibling.is_file():
            sibling.unlink(missing_ok=True)
        else:
            shutil.rmtree(sibling, ignore_errors=True)


def read_table(path: UPath, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file written by `write_table`; a file that lacks some of `columns` (one
    written by an older fer-data) is a clear error that names them and what to do."""
    try:
        if is_local(path):
            return pq.read_table(Path(path), columns=columns)
        with path.open("rb") as f:
            return pq.read_table(f, columns=columns)
    except pa.ArrowInvalid:
        missing = sorted(set(columns or ()) - set(read_schema(path).names))
        if not missing:
            raise
        raise ValueError(f"{path} has no column(s) {missing}: it was written by an older "
                         "fer-data; materialize the asset that writes it again") from None


def read_schema(path: UPath) -> pa.Schema:
    """The schema of a Parquet file, from its footer only."""
    if is_local(path):
        return pq.read_schema(Path(path))
    with path.open("rb") as f:
        return pq.read_schema(f)


def iter_batches(path: UPath, batch_size: int = 256, columns: list[str] | None = None):
    """Stream a Parquet file in record batches, so big tables never sit in memory whole."""
    if is_local(path):
        yield from pq.ParquetFile(Path(path)).iter_batches(batch_size, columns=columns)
        return
    with path.open("rb") as f:
        yield from pq.ParquetFile(f).iter_batches(batch_size, columns=columns)


def write_folder(target: UPath, files: dict[str, bytes]) -> UPath:
    """Replace a whole folder at once. On a local disk `target` is a symbolic link to a hidden
    versioned sibling folder: the new version is written whole, then the link is swapped in one
    rename, so a reader (or a run killed at any instant) sees the old folder or the new one,
    never a mix and never none; older versions are removed after the swap. On an object store
    the `_SUCCESS` marker is removed first and written last, so readers never trust a partial
    folder."""
    if is_local(target):
        final = Path(target)
        final.parent.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex
        version = final.with_name(f".{final.name}.v-{tag}")
        link = final.with_name(f".{final.name}.link-{tag}")
        try:
            version.mkdir()
            for name, data in files.items():
                (version / name).write_bytes(data)
            (version / SUCCESS).write_text("")
            link.symlink_to(version.name)
            if final.is_dir() and not final.is_symlink():  # a plain folder from before links
                os.replace(final, final.with_name(f".{final.name}.old-{tag}"))
            os.replace(link, final)
        except BaseException as exc:
            link.unlink(missing_ok=True)
            shutil.rmtree(version, ignore_errors=True)
            if isinstance(exc, OSError):
                raise write_error(final, exc) from exc
            raise
        _remove_versions(final, keep=version.name)
        return target
    marker = target / SUCCESS
    if marker.exists():
        marker.unlink()
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)
    marker.write_bytes(b"")
    return target
