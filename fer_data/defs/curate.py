"""`face_index`, `splits` and `curated_dataset`: de-duplicate across datasets, split without
leakage, publish."""

import json
from collections import Counter
from dataclasses import asdict
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
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
from fer_data.curate import (
    INDEX_COLUMNS,
    PUBLISH_COLUMNS,
    counts_by_source,
    load_faces,
    publish_rows,
)
from fer_data.dedup import (
    DEDUP_METADATA,
    KEY_COLUMNS,
    DedupOptions,
    build_index,
    dedup_options,
    drops_by_source,
)
from fer_data.defs.metadata import counts_table
from fer_data.defs.resources import StorageResource
from fer_data.previews import markdown_image
from fer_data.publish import CLASS_SETS, PublishOptions, publish
from fer_data.splits import SplitOptions, assign_splits, check_leaks
from fer_data.storage import ALL


class DedupConfig(Config):
    threshold: int = Field(4, description="pHash Hamming distance (crop, stored source) at or "
                           "below which two faces are near duplicates (0-15).")
    eq_threshold: int = Field(2, description="The same for the histogram-equalized source's "
                              "pHash; further matches need the second tier's check.")
    include_flips: bool = Field(True, description="Also match horizontally mirrored copies.")
    conflict_policy: Literal["drop_all", "keep_majority"] = Field(
        "keep_majority", description="A cluster whose members disagree on the label: keep the "
        "majority label's representative (ties drop all), or drop all.")
    verify_radius: int = Field(10, description="Second tier: faces whose equalized-source "
                               "pHashes are within this many bits are duplicates when their "
                               "thumbnails also correlate at min_correlation (0 turns it off).")
    min_correlation: float = Field(0.95, description="Second tier: thumbnail correlation (of "
                                   "the equalized 32x32 sources, mirrors too) that confirms a "
                                   "candidate.")
    min_std: float = Field(4.0, description="Faces with a pixel standard deviation below this "
                           "are near-uniform: rejected as low_information.")


@asset(
    deps=["face_crops"],
    group_name="curate",
    kinds={"numpy", "parquet"},
    owners=["team:fer-data"],
    code_version="2",
    automation_condition=AutomationCondition.eager(),
)
def face_index(context: AssetExecutionContext, config: DedupConfig,
               storage_resource: StorageResource) -> MaterializeResult:
    """Every face of every dataset, clustered by exact pixels and pHash (mirrors included),
    with the one kept per cluster and why the others were dropped."""
    layout = storage_resource.layout()
    faces, found = load_faces(layout, INDEX_COLUMNS)
    options = DedupOptions(**config.model_dump())
    result = build_index(faces, options)
    path = storage.write_table(result.index, layout.table("face_index", ALL),
                               {DEDUP_METADATA: json.dumps(asdict(options))})
    dropped = result.index.filter(pc.invert(result.index.column("keep")))
    rejects = pa.table({
        "dataset": dropped.column("dataset"),
        "source_path": dropped.column("source_path"),
        "stage": pa.array(["dedup"] * dropped.num_rows, pa.string()),
        "reason": dropped.column("drop_reason"),
        "detail": dropped.column("drop_detail"),
    })
    storage.write_table(rejects, layout.rejects("face_index", ALL))
    kept = int(pc.sum(result.index.column("keep")).as_py() or 0)
    sizes = Counter(result.index.column("cluster_size").to_pylist())
    return MaterializeResult(metadata={
        "dagster/row_count": result.index.num_rows,
        "datasets": ", ".join(found),
        "faces": result.index.num_rows,
        "kept": kept,
        "dropped_by_reason": counts_table(dict(Counter(rejects.column("reason").to_pylist())),
                                          "reason"),
        "near_duplicate_pairs": result.pairs,
        "pairs_by_key": MetadataValue.json(result.pairs_by_key),
        "dropped_as_duplicates_of": MetadataValue.json(drops_by_source(result.index)),
        "clusters_with_duplicates": sum(1 for s in sizes if s > 1),
        "exact_duplicate_groups": result.exact_groups,
        "exact_groups_with_label_conflicts": result.exact_conflict_groups,
        "label_conflict_clusters": result.conflict_clusters,
        "conflict_examples": MetadataValue.json(result.conflict_examples),
        "clusters_spanning_official_splits": result.clusters_spanning_splits,
        "cross_dataset_clusters": _cross_dataset_clusters(result.index),
        "table": MetadataValue.path(str(path)),
    })


def _cross_dataset_clusters(index: pa.Table) -> int:
    datasets: dict[int, set] = {}
    for c, d in zip(index.column("cluster_id").to_pylist(), index.column("dataset").to_pylist(),
                    strict=True):
        datasets.setdefault(c, set()).add(d)
    return sum(1 for v in datasets.values() if len(v) > 1)


class SplitConfig(Config):
    train: float = Field(0.7, description="Share of subjects (or images) for training.")
    val: float = Field(0.15, description="Share for validation.")
    test: float = Field(0.15, description="Share for testing.")
    seed: int = Field(0, description="Seed of the subject and image assignment.")


@asset(
    deps=["face_index"],
    group_name="curate",
    kinds={"numpy", "parquet"},
    owners=["team:fer-data"],
    code_version="2",
    automation_condition=AutomationCondition.eager(),
    check_specs=[
        AssetCheckSpec("no_duplicates_across_splits", asset="splits", blocking=True,
                       description="no near-duplicate pair (pHash, mirrors too) in two splits"),
        AssetCheckSpec("no_subjects_across_splits", asset="splits", blocking=True,
                       description="every subject's faces sit in one split"),
    ],
)
def splits(context: AssetExecutionContext, config: SplitConfig,
           storage_resource: StorageResource) -> MaterializeResult:
    """train/val/test for every kept face: official splits kept, subject-disjoint elsewhere.
    The leak check uses the de-duplication settings face_index recorded."""
    layout = storage_resource.layout()
    index = storage.read_table(layout.table("face_index", ALL))
    options = SplitOptions((config.train, config.val, config.test), config.seed)
    table = assign_splits(index, options)
    path = storage.write_table(table, layout.table("splits", ALL),
                               {"fer_data.splits": config.model_dump_json()})
    keys, _ = load_faces(layout, ["image_id", *KEY_COLUMNS])
    leaks = check_leaks(table, keys, dedup_options(index))
    rules = Counter(zip(table.column("dataset").to_pylist(), table.column("split").to_pylist(),
                        strict=True))
    return MaterializeResult(
        metadata={
            "dagster/row_count": table.num_rows,
            "by_dataset_and_split": counts_table({f"{d} / {s}": n for (d, s), n in rules.items()},
                                                 "dataset / split"),
            "rules": counts_table(dict(Counter(table.column("split_rule").to_pylist())), "rule"),
            "table": MetadataValue.path(str(path)),
        },
        check_results=[
            AssetCheckResult(check_name="no_duplicates_across_splits",
                             passed=leaks.duplicate_pairs_across_splits == 0,
                             metadata={"pairs": leaks.duplicate_pairs_across_splits,
                                       "by_key": MetadataValue.json(leaks.by_key),
                                       "examples": MetadataValue.json(leaks.examples)}),
            AssetCheckResult(check_name="no_subjects_across_splits",
                             passed=leaks.subjects_across_splits == 0,
                             metadata={"subjects": leaks.subjects_across_splits}),
        ],
    )


class PublishConfig(Config):
    class_sets: list[str] = Field(["fer7"], description=f"Class sets to publish, from "
                                  f"{sorted(CLASS_SETS)}.")
    calm: Literal["neutral", "drop"] = Field("neutral", description="RAVDESS calm: map to "
                                             "neutral or drop.")


@asset(
    deps=["splits", "synthetic_faces"],
    group_name="publish",
    kinds={"parquet"},
    owners=["team:fer-data"],
    code_version="2",
    automation_condition=AutomationCondition.eager(),
)
def curated_dataset(context: AssetExecutionContext, config: PublishConfig,
                    storage_resource: StorageResource) -> MaterializeResult:
    """The published datasets (curated/fer7, ...): train/val/test Parquet, dataset card,
    class balance plot and sample grid."""
    layout = storage_resource.layout()
    faces, _ = load_faces(layout, PUBLISH_COLUMNS)
    split_table = storage.read_table(layout.table("splits", ALL))
    synthetic_path = layout.table("synthetic_faces", ALL)
    synthetic = storage.read_table(synthetic_path) if synthetic_path.exists() else None
    rows = publish_rows(faces, split_table, synthetic)
    index = storage.read_table(layout.table("face_index", ALL),
                               columns=["image_id", "dataset", "drop_reason", "duplicate_of"])
    card = {
        "config": {key.decode(): json.loads(value) for table in (index, split_table)
                   for key, value in (table.schema.metadata or {}).items()
                   if key.startswith(b"fer_data.")},
        "by_source": counts_by_source(rows),
        "duplicates_by_source": drops_by_source(index),
        "cleaning": {
            "faces indexed": index.num_rows,
            "kept after de-duplication": split_table.num_rows,
            "synthetic rows (training split only, StarGAN)": 0 if synthetic is None
            else synthetic.num_rows,
            "dropped": dict(Counter(r for r in index.column("drop_reason").to_pylist() if r)),
        },
    }
    metadata = {}
    for name in config.class_sets:
        if name not in CLASS_SETS:
            raise ValueError(f"unknown class set {name!r}; choose from {sorted(CLASS_SETS)}")
        result = publish(rows, layout.curated_dir, PublishOptions(name, calm=config.calm), card)
        total = {s: sum(c.values()) for s, c in result.counts.items()}
        metadata[f"{name}_rows"] = MetadataValue.json(total)
        metadata[f"{name}_path"] = MetadataValue.path(str(result.folder))
        metadata[f"{name}_class_balance"] = MetadataValue.md(markdown_image(
            (result.folder / "class_balance.png").read_bytes(), f"{name} class balance"))
        metadata[f"{name}_samples"] = MetadataValue.md(markdown_image(
            (result.folder / "samples.png").read_bytes(), f"{name} samples"))
    metadata["config"] = MetadataValue.json(json.loads(config.model_dump_json()))
    metadata["dagster/row_count"] = rows.num_rows
    return MaterializeResult(metadata=metadata)

