"""Ingest stage: one dataset folder in its original layout -> a raw_images table and a rejects
table, with every input accounted for."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from upath import UPath

from fer_data import schema, storage
from fer_data.datasets import entry
from fer_data.readers import Reader, ReadOptions, Record
from fer_data.readers.base import is_ignored, relpath, walk_files

# Reject reasons that mean a broken input (as opposed to one skipped by design, such as a CK+
# intermediate frame or a redundant video frame); on_bad_file=error fails on these.
BAD_INPUT_REASONS = frozenset({"corrupt_image", "not_an_image", "too_small", "bad_pixel_count",
                               "bad_pixels", "unknown_label", "unparsable_name", "corrupt_video",
                               "bad_label_file", "too_large", "unreadable", "unknown_split",
                               "short_row", "long_row", "bad_label_line", "missing_image",
                               "repeated_line", "bad_box", "unlabeled"})


WRITE_ROWS = 512  # records per row group when ingest streams into its table


class LayoutError(ValueError):
    """The raw folder exists but holds nothing a reader recognises."""


@dataclass
class IngestResult:
    dataset: str
    records: pa.Table
    rejects: pa.Table
    reader: str | None
    inputs: int
    unaccounted: list[str] = field(default_factory=list)  # inputs with no record and no reject
    unexpected: list[str] = field(default_factory=list)  # outcomes for no listed input
    unused_files: list[str] = field(default_factory=list)  # files no reader looked at
    note: str = ""

    @property
    def accounted(self) -> bool:
        return not self.unaccounted and not self.unexpected

    def rejects_by_reason(self) -> dict[str, int]:
        return dict(Counter(self.rejects.column("reason").to_pylist()).most_common())

    def labels(self) -> dict[str, int]:
        return dict(sorted(Counter(self.records.column("label").to_pylist()).items()))


def expected_layouts(dataset: str) -> str:
    return " or ".join(reader.layout for reader in entry(dataset).readers)


def missing_note(dataset: str, folder: Path) -> str:
    return (f"No data in {folder}. Expected layout: {expected_layouts(dataset)}. "
            f"Source: {entry(dataset).source}")


def describe_folder(folder: Path, limit: int = 8) -> str:
    """A short inventory for error messages: top-level entries and file types."""
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    suffixes = Counter(p.suffix.lower() or "(none)" for p in walk_files(folder))
    top = ", ".join(entries[:limit]) + (" ..." if len(entries) > limit else "")
    kinds = ", ".join(f"{n} {s}" for s, n in suffixes.most_common(6))
    return f"entries: {top}; files: {kinds or 'none'}"


def choose_reader(dataset: str, folder: Path) -> Reader:
    for reader in entry(dataset).readers:
        if reader.detect(folder):
            return reader
    raise LayoutError(
        f"{folder} holds no {dataset} layout this pipeline knows ({describe_folder(folder)}). "
        f"Expected: {expected_layouts(dataset)}."
    )


def ingest_dataset(raw_dir: Path, dataset: str, options: ReadOptions | None = None,
                   write_to: UPath | None = None,
                   before_commit: Callable[[pa.Table], None] | None = None) -> IngestResult:
    """Read raw/<dataset>/ with the first reader that recognises its layout.

    With `write_to`, records are streamed into that Parquet file (atomically, WRITE_ROWS at a
    time: AffectNet's hundreds of thousands of photographs never sit in memory together) and
    the result's `records` holds every column but `image`; without it, the whole table.
    `before_commit(rejects)` may raise to leave `write_to` as it was (on_bad_file=error).
    Returns zero rows (with a note saying where to get the data) when the folder is absent or
    empty; raises `LayoutError` when it holds something unrecognisable or raw_dir is not a folder.
    """
    options = options or ReadOptions()
    raw_dir = Path(raw_dir)
    if raw_dir.exists() and not raw_dir.is_dir():
        raise LayoutError(f"raw data root {raw_dir} is not a directory (set FER_RAW_DIR)")
    folder = raw_dir / dataset
    if folder.exists() and not folder.is_dir():
        raise LayoutError(f"{folder} is a file; expected a folder: {expected_layouts(dataset)}")
    if not folder.is_dir() or not any(p for p in walk_files(folder) if not is_ignored(p)):
        empty = _table([], schema.RAW_IMAGE)
        if write_to is not None:
            storage.write_table(empty, write_to)
        return IngestResult(dataset, empty, _table([], schema.REJECT), None, 0,
                            note=missing_note(dataset, folder))

    reader = choose_reader(dataset, folder)
    scan = reader.scan(folder, dataset, options)
    records: list[dict] = []
    rejects: list[dict] = []
    seen: set[str] = set()
    with ExitStack() as stack:
        writer = None if write_to is None else \
            stack.enter_context(storage.table_writer(write_to, schema.RAW_IMAGE))
        for outcome in scan.outcomes:
            (records if isinstance(outcome, Record) else rejects).append(outcome.row())
            seen.add(outcome.source_path)
            if writer is not None and len(records) >= WRITE_ROWS:
                writer.write_table(_table(records, schema.RAW_IMAGE))
                records.clear()
        if writer is not None:
            writer.write_table(_table(records, schema.RAW_IMAGE))
        if before_commit is not None:
            before_commit(_table(rejects, schema.REJECT))
    if write_to is not None:  # what the caller needs of the written rows: all but the pixels
        records = storage.read_table(write_to, [n for n in schema.RAW_IMAGE.names
                                                if n != "image"]).to_pylist()
    inputs = set(scan.inputs)
    used = inputs | set(scan.consumed)
    unused = [relpath(p, folder) for p in walk_files(folder)
              if not is_ignored(p) and relpath(p, folder) not in used]
    return IngestResult(
        dataset=dataset,
        records=_table(records, schema.RAW_IMAGE) if write_to is None else
        pa.Table.from_pylist(records),
        rejects=_table(rejects, schema.REJECT),
        reader=reader.name,
        inputs=len(scan.inputs),
        unaccounted=sorted(inputs - seen),
        unexpected=sorted(seen - inputs),
        unused_files=unused,
    )


def folder_fingerprint(folder: Path) -> str:
    """A hash of every file's relative path, size and modification time under folder: changes
    when a dataset folder gains, loses or rewrites a file; "absent" when there is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return "absent"
    digest = hashlib.sha1()
    for path in walk_files(folder):
        stat = path.stat()
        digest.update(f"{relpath(path, folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _table(rows: list[dict], table_schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=table_schema)
