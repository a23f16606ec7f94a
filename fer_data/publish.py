"""Publish stage: curated/<class set>/ with train/val/test Parquet that pandas, pyarrow, polars,
DuckDB, Hugging Face `datasets` and `fer_data.torch_dataset.CuratedFaces` read directly, plus a
dataset card, a class-balance plot and a sample grid. Written atomically."""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image, ImageDraw
from upath import UPath

from fer_data.images import decode_png
from fer_data.previews import contact_sheet
from fer_data.readers import SOURCES
from fer_data.schema import SPLITS
from fer_data.storage import is_local

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "fer7": ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    "fer4_nhsa": ("neutral", "happy", "sad", "angry"),
    "fer4_hnss": ("happy", "neutral", "sad", "surprise"),
}
SUCCESS = "_SUCCESS"
ROW_GROUP = 1024  # rows per Parquet row group: the unit CuratedFaces reads lazily

CURATED = pa.schema([
    pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
    pa.field("label", pa.int64()),
    pa.field("label_name", pa.string()),
    pa.field("split", pa.string()),
    pa.field("source_dataset", pa.string()),
    # the original file, relative to its dataset folder (a synthetic row: its source face's)
    pa.field("source_path", pa.string()),
    pa.field("subject_id", pa.string()),
    pa.field("is_synthetic", pa.bool_()),
    pa.field("source_image_id", pa.string()),
    pa.field("generator", pa.string()),
    pa.field("image_id", pa.string()),
])


def hf_features(names: tuple[str, ...]) -> dict:
    """The `huggingface` schema metadata that makes `datasets` load Image and ClassLabel."""
    value = {"dtype": "string", "_type": "Value"}
    return {"info": {"features": {
        "image": {"_type": "Image"},
        "label": {"names": list(names), "_type": "ClassLabel"},
        "label_name": value, "split": value, "source_dataset": value, "source_path": value,
        "subject_id": value,
        "is_synthetic": {"dtype": "bool", "_type": "Value"},
        "source_image_id": value, "generator": value, "image_id": value,
    }}}


@dataclass(frozen=True)
class PublishOptions:
    class_set: str = "fer7"
    contempt: Literal["drop"] = "drop"
    calm: Literal["neutral", "drop"] = "neutral"
    samples_per_class: int = 10


@dataclass
class PublishResult:
    folder: UPath
    counts: dict[str, dict[str, int]]  # split -> label -> rows
    excluded: dict[str, int]  # label -> rows left out by the class set
    files: list[str] = field(default_factory=list)


def map_label(label: str, options: PublishOptions) -> str | None:
    """A canonical label in this class set's terms, or None when the set leaves it out."""
    if label == "calm":
        label = "neutral" if options.calm == "neutral" else None
    if label is None or label not in CLASS_SETS[options.class_set]:
        return None
    return label


def curated_rows(rows: pa.Table, options: PublishOptions) -> tuple[pa.Table, dict[str, int]]:
    """Rows (image_id, dataset, source_path, label, subject_id, split, face, is_synthetic,
    source_image_id, generator) -> the curated schema, ordered by split then image_id; plus
    what was excluded."""
    names = CLASS_SETS[options.class_set]
    excluded: Counter = Counter()
    out = []
    for r in rows.to_pylist():
        label = map_label(r["label"], options)
        if label is None:
            excluded[r["label"]] += 1
            continue
        out.append({
            "image": {"bytes": r["face"], "path": f"{r['dataset']}/{r['image_id']}.png"},
            "label": names.index(label),
            "label_name": label,
            "split": r["split"],
            "source_dataset": r["dataset"],
            "source_path": r["source_path"],
            "subject_id": r["subject_id"],
            "is_synthetic": bool(r.get("is_synthetic") or False),
            "source_image_id": r.get("source_image_id"),
            "generator": r.get("generator"),
            "image_id": r["image_id"],
        })
    out.sort(key=lambda r: (SPLITS.index(r["split"]), r["image_id"]))
    return pa.Table.from_pylist(out, schema=CURATED), dict(excluded)


def publish(rows: pa.Table, curated_dir: UPath, options: PublishOptions,
            card: dict) -> PublishResult:
    """Write curated_dir/<class set>/ atomically: everything goes to a hidden sibling folder,
    which then replaces the old one in one rename (local disks). On object stores, the
    `_SUCCESS` marker is removed first and written last, so readers never trust a partial
    dataset."""
    table, excluded = curated_rows(rows, options)
    names = CLASS_SETS[options.class_set]
    counts = {s: dict(Counter(table.filter(pc.equal(table["split"], s))
                              .column("label_name").to_pylist())) for s in SPLITS}
    meta = {b"huggingface": json.dumps(hf_features(names)).encode(),
            b"fer_data": json.dumps({"class_set": options.class_set, "classes": list(names),
                                     "publish": asdict(options), "versions": versions()}).encode()}
    files = {f"{s}.parquet": _parquet_bytes(table.filter(pc.equal(table["split"], s)),
                                            meta) for s in SPLITS}
    files["class_balance.png"] = class_balance_png(counts, names)
    files["samples.png"] = sample_grid_png(table, names, options.samples_per_class)
    files["dataset_card.md"] = dataset_card(options, counts, excluded, card).encode()
    target = curated_dir / options.class_set
    _write_folder(target, files)
    return PublishResult(target, counts, excluded, sorted(files))


def _parquet_bytes(table: pa.Table, meta: dict[bytes, bytes]) -> bytes:
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=ROW_GROUP, compression="zstd")
    return sink.getvalue()


def _write_folder(target: UPath, files: dict[str, bytes]) -> None:
    if is_local(target):
        final = Path(target)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")
        staging.mkdir()
        try:
            for name, data in files.items():
                (staging / name).write_bytes(data)
            (staging / SUCCESS).write_text("")
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
            if final.exists():
                os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return
    marker = target / SUCCESS
    if marker.exists():
        marker.unlink()
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)
    marker.write_bytes(b"")


def versions() -> dict[str, str]:
    out = {}
    for package in ("fer-data", "dagster", "torch", "pyarrow", "numpy", "facenet-pytorch",
                    "opencv-python-headless"):
        try:
            out[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def class_balance_png(counts: dict[str, dict[str, int]], names: tuple[str, ...]) -> bytes:
    """Stacked bars: rows per class, split by train/val/test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    bottom = np.zeros(len(names))
    for split, colour in zip(SPLITS, ("#4c72b0", "#dd8452", "#55a868"), strict=True):
        values = np.array([counts[split].get(n, 0) for n in names])
        ax.bar(names, values, bottom=bottom, label=split, color=colour)
        bottom += values
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{int(total):,}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("images")
    ax.set_title("class balance by split")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def sample_grid_png(table: pa.Table, names: tuple[str, ...], per_class: int) -> bytes:
    """One row per class of the first training faces (by image id), class names on the left."""
    cell, label_w = 48, 70
    train = table.filter(pc.equal(table["split"], "train"))
    labels = train.column("label").to_pylist()
    images = train.column("image").to_pylist()
    rows = []
    for k in range(len(names)):
        faces = [decode_png(images[i]["bytes"]) for i in range(len(labels)) if labels[i] == k]
        rows.append(contact_sheet(faces[:per_class], columns=per_class, cell=cell)
                    if faces else np.full((cell + 4, cell + 4), 255, np.uint8))
    width = label_w + max(r.shape[1] for r in rows)
    sheet = Image.new("L", (width, sum(r.shape[0] for r in rows)), 255)
    draw = ImageDraw.Draw(sheet)
    y = 0
    for name, row in zip(names, rows, strict=True):
        sheet.paste(Image.fromarray(row), (label_w, y))
        draw.text((4, y + row.shape[0] // 2 - 5), name, fill=0)
        y += row.shape[0]
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def source_lines(by_source: dict[str, dict[str, int]],
                 duplicates: dict[str, dict[str, int]]) -> list[str]:
    """One line per source: rows published (all class sets' rows before the class filter) and
    faces dropped as duplicates of a face kept from which source."""
    out = []
    for source in sorted(set(by_source) | set(duplicates)):
        rows = sum(by_source.get(source, {}).values())
        dropped = duplicates.get(source, {})
        line = f"- **{source}**: {rows:,} rows"
        if dropped:
            line += f"; {sum(dropped.values()):,} dropped as duplicates of " + ", ".join(
                f"{of} ({n:,})" for of, n in sorted(dropped.items(), key=lambda kv: -kv[1]))
        out.append(line)
    return out


def dataset_card(options: PublishOptions, counts: dict[str, dict[str, int]],
                 excluded: dict[str, int], card: dict) -> str:
    """Markdown: sources and licences, counts, de-duplication figures, config, versions."""
    names = CLASS_SETS[options.class_set]
    lines = [f"# fer-data: {options.class_set}", "",
             f"Classes (label index order): {', '.join(f'{i} {n}' for i, n in enumerate(names))}.",
             "", "## Counts", "", "| class | " + " | ".join(SPLITS) + " | total |",
             "|---|" + "---:|" * (len(SPLITS) + 1)]
    for n in names:
        values = [counts[s].get(n, 0) for s in SPLITS]
        lines.append(f"| {n} | " + " | ".join(f"{v:,}" for v in values) + f" | {sum(values):,} |")
    totals = [sum(counts[s].values()) for s in SPLITS]
    lines.append("| **all** | " + " | ".join(f"{v:,}" for v in totals) + f" | {sum(totals):,} |")
    by_source = card.get("by_source", {})
    if by_source:
        lines += ["", "### By source (rows per split)", "",
                  "| source | " + " | ".join(SPLITS) + " |", "|---|" + "---:|" * len(SPLITS)]
        for source in sorted(by_source):
            lines.append(f"| {source} | " + " | ".join(
                f"{by_source[source].get(s, 0):,}" for s in SPLITS) + " |")
        lines += ["", "### Where each source's rows went", ""]
        lines += source_lines(by_source, card.get("duplicates_by_source", {}))
    lines += ["", "## Sources and licences", ""]
    for source in sorted(by_source) or sorted(SOURCES):
        if source in SOURCES:
            lines.append(f"- **{source}**: {SOURCES[source]}")
    lines += ["", "The most restrictive licence among the sources applies to this dataset.",
              "", "## Cleaning", ""]
    for key, value in card.get("cleaning", {}).items():
        lines.append(f"- {key}: {value}")
    if excluded:
        lines.append("- left out by the class set: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(excluded.items())))
    lines += ["", "## Configuration", "", "```json",
              json.dumps({"publish": asdict(options), **card.get("config", {})}, indent=2,
                         sort_keys=True), "```", "", "## Versions", ""]
    lines += [f"- {k} {v}" for k, v in versions().items()]
    return "\n".join(lines) + "\n"
