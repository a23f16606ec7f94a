"""`face_index`: every face of every dataset, clustered into duplicates, one kept per cluster."""

import json
from collections import Counter
from dataclasses import asdict
from typing import Literal

import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from fer_data import storage
from fer_data.artefacts import load_face_crops, write_kept_pairs
from fer_data.datasets import keeper_priority
from fer_data.dedup import (
    DEDUP_METADATA,
    INDEX_COLUMNS,
    PAIRS_METADATA,
    DedupOptions,
    build_index,
    cross_dataset_clusters,
    dedup_rejects,
    drops_by_source,
)
from fer_data.defs.metadata import counts_table
from fer_data.defs.resources import StorageResource
from fer_data.storage import ALL


class DedupConfig(Config):
    """DedupOptions as run config; the defaults are the library's."""

    threshold: int = Field(
        DedupOptions.threshold, description="pHash Hamming distance (crop, stored source) at "
        "or below which two faces are near duplicates (0-15).")
    eq_threshold: int = Field(
        DedupOptions.eq_threshold, description="The same for the histogram-equalized source's "
        "pHash; further matches need the second tier's check.")
    hash_correlation: float = Field(
        DedupOptions.hash_correlation, description="Near pHashes join two faces only when "
        "their thumbnails also correlate at this (0: the hashes alone); other near-hash pairs "
        "go to the second tier's checks.")
    include_flips: bool = Field(DedupOptions.include_flips,
                                description="Also match horizontally mirrored copies.")
    conflict_policy: Literal["drop_all", "keep_majority"] = Field(
        DedupOptions.conflict_policy, description="A cluster whose members disagree on the "
        "label: keep the majority label's representative (ties drop all), or drop all.")
    verify_neighbours: int = Field(
        DedupOptions.verify_neighbours, description="Second tier: each face's this many most "
        "thumbnail-correlated faces outside its first-tier cluster (and its mirror image's) are "
        "duplicates when their thumbnails correlate at min_correlation (0 turns it off).")
    min_correlation: float = Field(
        DedupOptions.min_correlation, description="Second tier: thumbnail correlation (of the "
        "equalized 32x32 sources, mirrors too) that confirms a candidate.")
    robust_correlation: float = Field(
        DedupOptions.robust_correlation, description="Second tier, robust: a candidate "
        "correlating at robust_floor or more is confirmed when the 80% of thumbnail pixels "
        "where the two agree best correlate at this (a watermark, local contrast change or "
        "posterized copy, same label only; above 1 turns it off).")
    robust_floor: float = Field(
        DedupOptions.robust_floor, description="Second tier, robust: the plain thumbnail "
        "correlation a candidate needs before the robust check.")
    robust_radius: int = Field(
        DedupOptions.robust_radius, description="Second tier, robust: a candidate also needs "
        "its equalized-source pHashes within this many bits, or a thumbnail quarter within "
        "robust_quarter_radius.")
    robust_quarter_radius: int = Field(
        DedupOptions.robust_quarter_radius, description="Second tier, robust: the quarter-hash "
        "radius of that gate (a watermark band leaves one quarter of the face alone).")
    band_width: int = Field(
        DedupOptions.band_width, description="Second tier, band: a candidate (same gates as "
        "robust) correlating at band_floor or more is confirmed when it correlates at "
        "min_correlation outside the straight band this many thumbnail pixels wide (of 32) "
        "where the two differ most: a line of watermark text.")
    band_floor: float = Field(
        DedupOptions.band_floor, description="Second tier, band: the plain thumbnail "
        "correlation a candidate needs before the band check (above 1 turns it off).")
    registered_floor: float = Field(
        DedupOptions.registered_floor, description="Second tier, registered: the plain "
        "thumbnail correlation a same-label candidate the other checks left apart needs "
        "before it is aligned by a small shift and scale.")
    registered_correlation: float = Field(
        DedupOptions.registered_correlation, description="Second tier, registered: the "
        "correlation after that alignment that confirms it (a copy shifted or re-cropped by "
        "a pixel or two; above 1 turns it off).")
    registered_shift: float = Field(
        DedupOptions.registered_shift, description="Second tier, registered: the largest "
        "shift the alignment may use, in thumbnail pixels (of 32).")
    registered_scale: float = Field(
        DedupOptions.registered_scale, description="Second tier, registered: the largest "
        "scale change per axis the alignment may use (0.12: 1 +- 12%).")
    min_std: float = Field(
        DedupOptions.min_std, description="Faces with a pixel standard deviation below this "
        "outside their most varied band are near-uniform, or a line of text on a blank "
        "picture: rejected as low_information.")


def dedup_settings(config: DedupConfig) -> DedupOptions:
    """The run's options: its config, and which dataset's copy a cluster keeps (the registry)."""
    return DedupOptions(**config.model_dump(), dataset_priority=keeper_priority())


@asset(
    deps=["face_crops"],
    group_name="dedup",
    kinds={"numpy", "parquet"},
    owners=["team:fer-data"],
    code_version="12",
    automation_condition=AutomationCondition.eager(),
)
def face_index(context: AssetExecutionContext, config: DedupConfig,
               storage_resource: StorageResource) -> MaterializeResult:
    """Every face of every dataset, clustered by exact pixels and pHash (mirrors included),
    with the one kept per cluster and why the others were dropped. The options are recorded in
    the table's metadata, where `splits` reads them for its leak check."""
    layout = storage_resource.layout()
    faces, found = load_face_crops(layout, INDEX_COLUMNS)
    options = dedup_settings(config)
    result = build_index(faces, options)
    index = result.index
    stamp = write_kept_pairs(layout, result.kept_pairs)  # first: the index commits the run
    path = storage.write_table(index, layout.table("face_index", ALL),
                               {DEDUP_METADATA: json.dumps(asdict(options)),
                                PAIRS_METADATA: json.dumps(result.pairs_by_key), **stamp})
    rejects = dedup_rejects(index)
    storage.write_table(rejects, layout.rejects("face_index", ALL))
    return MaterializeResult(metadata={
        "dagster/row_count": index.num_rows,
        "datasets": ", ".join(found),
        "faces": index.num_rows,
        "kept": int(pc.sum(index.column("keep")).as_py() or 0),
        "dropped_by_reason": counts_table(dict(Counter(rejects.column("reason").to_pylist())),
                                          "reason"),
        "near_duplicate_pairs": result.pairs,
        "pairs_by_key": MetadataValue.json(result.pairs_by_key),
        "dropped_as_duplicates_of": MetadataValue.json(drops_by_source(index)),
        "clusters_with_duplicates": sum(1 for s in Counter(index.column("cluster_size")
                                                           .to_pylist()) if s > 1),
        "exact_duplicate_groups": result.exact_groups,
        "exact_groups_with_label_conflicts": result.exact_conflict_groups,
        "label_conflict_clusters": result.conflict_clusters,
        "conflict_examples": MetadataValue.json(result.conflict_examples),
        "clusters_spanning_official_splits": result.clusters_spanning_splits,
        "cross_dataset_clusters": cross_dataset_clusters(index),
        "table": MetadataValue.path(str(path)),
    })
