"""Publish stage: curated/<class set>/ with train/val/test Parquet that pandas, pyarrow, polars,
DuckDB, Hugging Face `datasets` and `fer_data.torch_dataset.CuratedFaces` read directly, plus a
dataset card, a class-balance plot and a sample grid. Written atomically."""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image, ImageDraw
from upath import UPath

from fer_data import storage
from fer_data.datasets import REGISTRY
from fer_data.dedup import KEY_KINDS, PAIRS_METADATA, drops_by_source
from fer_data.figures import figure_png, pyplot
from fer_data.images import decode_png
from fer_data.labels import class_names, map_label
from fer_data.previews import contact_sheet
from fer_data.schema import CURATED, SPLITS, hf_features

ROW_GROUP = 1024  # rows per Parquet row group: the unit CuratedFaces reads lazily
# what the publish stage reads of every face_crops table
PUBLISH_COLUMNS = ["image_id", "dataset", "source_path", "label", "subject_id", "face", "bbox",
                   "valence", "arousal"]


@dataclass(frozen=True)
class PublishOptions:
    class_set: str = "fer7"
    contempt: Literal["drop"] = "drop"
    calm: Literal["neutral", "drop"] = "neutral"
    samples_per_class: int = 10
    # what to do with training rows the label audit flagged (label_issues): keep them (their
    # label_quality says how doubtful they are), drop them, or give them the suggested label
    label_audit: Literal["keep", "drop", "relabel"] = "keep"


@dataclass
class PublishResult:
    folder: UPath
    counts: dict[str, dict[str, int]]  # split -> label -> rows
    excluded: dict[str, int]  # label -> rows left out by the class set
    files: list[str] = field(default_factory=list)


AUDIT_COLUMNS = ["label_quality", "flagged", "suggested_label"]


def publish_rows(faces: pa.Table, splits: pa.Table, synthetic: pa.Table | None = None,
                 audit: pa.Table | None = None) -> pa.Table:
    """Kept real faces with their split, plus synthetic rows (training split only); with the
    label audit (label_issues), each audited row's label_quality, flag and suggested label
    (null elsewhere). An audit of another training split fails: it would vouch for the wrong
    faces."""
    # a take by position, not Table.join: Acero cannot carry the fixed-size bbox column
    position = {image_id: n for n, image_id in enumerate(faces.column("image_id").to_pylist())}
    wanted = splits.column("image_id").to_pylist()
    missing = [i for i in wanted if i not in position]
    if missing:
        raise ValueError(f"{len(missing)} split rows have no face in face_crops (e.g. "
                         f"{missing[0]}): materialize face_crops and splits again")
    real = faces.select(PUBLISH_COLUMNS).take([position[i] for i in wanted])
    real = real.append_column("split", splits.column("split"))
    real = real.append_column("is_synthetic", pa.array([False] * real.num_rows))
    real = real.append_column("source_image_id", pa.nulls(real.num_rows, pa.string()))
    real = real.append_column("generator", pa.nulls(real.num_rows, pa.string()))
    for name, column in audit_columns(real, audit).items():
        real = real.append_column(name, column)
    if synthetic is None or synthetic.num_rows == 0:
        return real
    extra = synthetic.select([c for c in real.column_names if c in synthetic.column_names])
    for name in real.column_names:  # what only a real face has (its box, AffectNet's affect)
        if name not in extra.column_names:
            extra = extra.append_column(real.schema.field(name),
                                        pa.nulls(extra.num_rows, real.schema.field(name).type))
    extra = extra.select(real.column_names)
    if set(extra.column("split").to_pylist()) - {"train"}:
        raise ValueError("synthetic faces may only join the training split")
    return pa.concat_tables([real, extra.cast(real.schema)])


def audit_columns(real: pa.Table, audit: pa.Table | None) -> dict[str, pa.Array]:
    """AUDIT_COLUMNS for the real rows, from the label audit by image_id."""
    types = {"label_quality": pa.float32(), "flagged": pa.bool_(), "suggested_label": pa.string()}
    if audit is None:
        return {name: pa.nulls(real.num_rows, kind) for name, kind in types.items()}
    train = pc.equal(real["split"], "train")
    train_ids = set(real.filter(train).column("image_id").to_pylist())
    audited = audit.column("image_id").to_pylist()
    if not set(audited) <= train_ids:
        stray = next(i for i in audited if i not in train_ids)
        raise ValueError(f"label_issues audited {stray}, which is not in the training split: "
                         "the audit is of another split, materialize label_issues again")
    position = {image_id: n for n, image_id in enumerate(audited)}
    rows = [position.get(i) for i in real.column("image_id").to_pylist()]
    return {name: audit.column(name).take(pa.array(rows, pa.int64())).cast(kind)
            for name, kind in types.items()}


def counts_by_source(rows: pa.Table) -> dict[str, dict[str, int]]:
    """Rows per split of each source dataset."""
    out: dict[str, Counter] = defaultdict(Counter)
    for dataset, split in zip(rows.column("dataset").to_pylist(),
                              rows.column("split").to_pylist(), strict=True):
        out[dataset][split] += 1
    return {k: dict(v) for k, v in out.items()}


def card_facts(rows: pa.Table, index: pa.Table, splits: pa.Table,
               synthetic: pa.Table | None, synthetic_report: dict | None = None,
               audit: pa.Table | None = None) -> dict:
    """What the dataset card says beyond the counts: the recorded configuration of the
    upstream stages, rows and duplicates per source, the cleaning figures, whether the
    synthetic faces were withheld (the generator misses the realism floors) and why, and what
    the label audit flagged per class."""
    withheld = (synthetic_report or {}).get("withheld_because")
    facts = {
        "config": {key.decode(): json.loads(value) for table in (index, splits)
                   for key, value in (table.schema.metadata or {}).items()
                   if key.startswith(b"fer_data.")},
        "by_source": counts_by_source(rows),
        "duplicates_by_source": drops_by_source(index),
        "duplicate_pairs": json.loads((index.schema.metadata or {}).get(
            PAIRS_METADATA.encode(), b"{}")),
        "cleaning": {
            "faces indexed": index.num_rows,
            "kept after de-duplication": splits.num_rows,
            "synthetic rows (training split only, StarGAN)": 0 if synthetic is None
            else synthetic.num_rows,
            "dropped": dict(Counter(r for r in index.column("drop_reason").to_pylist() if r)),
        },
    }
    if audit is None:
        facts["cleaning"]["label audit"] = "not run (materialize label_issues)"
    else:
        flagged = Counter(audit.filter(audit["flagged"]).column("label").to_pylist())
        facts["cleaning"]["label audit: training labels flagged as probably wrong"] = (
            f"{sum(flagged.values()):,} of {audit.num_rows:,} ("
            + ", ".join(f"{k} {v:,}" for k, v in sorted(flagged.items())) + ")")
    if withheld:
        facts["cleaning"]["synthetic faces withheld: the generator misses the realism floors"] = \
            "; ".join(withheld)
    return facts


def curated_rows(rows: pa.Table, options: PublishOptions) -> tuple[pa.Table, dict[str, int]]:
    """Rows (image_id, dataset, source_path, label, subject_id, split, face, is_synthetic,
    source_image_id, generator, bbox, valence, arousal and the AUDIT_COLUMNS) -> the curated
    schema, ordered by split then image_id, flagged rows kept, dropped or relabelled
    (options.label_audit); plus what was excluded."""
    names = class_names(options.class_set)
    excluded: Counter = Counter()
    out = []
    for r in rows.to_pylist():
        given = r["label"]
        if r.get("flagged") and options.label_audit != "keep":
            if options.label_audit == "drop":
                excluded["flagged by the label audit"] += 1
                continue
            given = r["suggested_label"]
        label = map_label(given, options.class_set, options.calm)
        if label is None:
            excluded[given] += 1
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
            "bbox": r.get("bbox"),
            "valence": r.get("valence"),
            "arousal": r.get("arousal"),
            "label_quality": r.get("label_quality"),
            "label_flagged": r.get("flagged"),
        })
    out.sort(key=lambda r: (SPLITS.index(r["split"]), r["image_id"]))
    return pa.Table.from_pylist(out, schema=CURATED), dict(excluded)


def publish(rows: pa.Table, curated_dir: UPath, options: PublishOptions,
            card: dict, extra_files: dict[str, bytes] | None = None) -> PublishResult:
    """Write curated_dir/<class set>/ as one atomic folder swap (`storage.write_folder`)."""
    table, excluded = curated_rows(rows, options)
    names = class_names(options.class_set)
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
    files.update(extra_files or {})  # e.g. synthetic_report.json, the generator's quality
    target = curated_dir / options.class_set
    storage.write_folder(target, files)
    return PublishResult(target, counts, excluded, sorted(files))


def _parquet_bytes(table: pa.Table, meta: dict[bytes, bytes]) -> bytes:
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=ROW_GROUP, compression="zstd")
    return sink.getvalue()


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
    fig, ax = pyplot().subplots(figsize=(7, 3.6), dpi=100)
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
    return figure_png(fig)


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
    names = class_names(options.class_set)
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
    sources = {d.name: d.source for d in REGISTRY}
    for source in sorted(by_source) or sorted(sources):
        if source in sources:
            lines.append(f"- **{source}**: {sources[source]}")
    lines += ["", "The most restrictive licence among the sources applies to this dataset.",
              "", "## Cleaning", ""]
    for key, value in card.get("cleaning", {}).items():
        lines.append(f"- {key}: {value}")
    if excluded:
        lines.append("- left out by the class set: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(excluded.items())))
    pairs = card.get("duplicate_pairs", {})
    if pairs:
        lines += ["", "Duplicate pairs found, by the key that found them (a pair can be found by "
                  "several; a near-hash pair is counted where its thumbnails were checked, i.e. "
                  "where it could still join two clusters):", ""]
        lines += [f"- {KEY_KINDS.get(key, key)} (`{key}`): {n:,}" for key, n in pairs.items()]
    lines += ["", "## Configuration", "", "```json",
              json.dumps({"publish": asdict(options), **card.get("config", {})}, indent=2,
                         sort_keys=True), "```", "", "## Versions", ""]
    lines += [f"- {k} {v}" for k, v in versions().items()]
    return "\n".join(lines) + "\n"
