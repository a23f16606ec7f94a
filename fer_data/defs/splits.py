"""`splits`: train/val/test for every kept face, checked for leaks against the duplicate pairs
face_index found."""

from collections import Counter

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
from fer_data.artefacts import read_kept_pairs
from fer_data.defs.metadata import counts_table
from fer_data.defs.resources import StorageResource
from fer_data.splits import SplitOptions, assign_splits, check_leaks
from fer_data.storage import ALL


class SplitConfig(Config):
    train: float = Field(
        SplitOptions.ratios[0], description="Share of subjects (or images) for training.")
    val: float = Field(SplitOptions.ratios[1], description="Share for validation.")
    test: float = Field(SplitOptions.ratios[2], description="Share for testing.")
    seed: int = Field(SplitOptions.seed, description="Seed of the subject and image assignment.")


@asset(
    deps=["face_index"],
    group_name="splits",
    kinds={"numpy", "parquet"},
    owners=["team:fer-data"],
    code_version="3",
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
    The leak check reads the duplicate pairs face_index found between kept faces."""
    layout = storage_resource.layout()
    index = storage.read_table(layout.table("face_index", ALL))
    table = assign_splits(index, SplitOptions((config.train, config.val, config.test),
                                              config.seed))
    path = storage.write_table(table, layout.table("splits", ALL),
                               {"fer_data.splits": config.model_dump_json()})
    leaks = check_leaks(table, read_kept_pairs(layout, index.schema))
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
