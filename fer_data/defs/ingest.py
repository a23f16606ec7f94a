"""`raw_images`: each dataset folder under raw/, read from its original layout."""


from collections import Counter
from typing import Literal

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from fer_data import storage
from fer_data.defs.metadata import counts_table, listing, speed, stopwatch
from fer_data.defs.partitions import dataset_partitions
from fer_data.defs.resources import StorageResource
from fer_data.frames import FrameOptions
from fer_data.ingest import BAD_INPUT_REASONS, folder_fingerprint, ingest_dataset
from fer_data.readers import ReadOptions


class IngestConfig(Config):
    ckplus_peak_frames: int = Field(
        ReadOptions.ckplus_peak_frames, description="CK+: last N frames of a sequence take its "
        "label (the CK+48 export uses 3).")
    ckplus_first_frame_neutral: bool = Field(
        ReadOptions.ckplus_first_frame_neutral, description="CK+: first frame of every sequence "
        "becomes a neutral sample.")
    ferplus_labels: bool = Field(
        ReadOptions.ferplus_labels, description="FER2013: use the FER+ majority vote as the label "
        "when fer2013new.csv is present.")
    video_fps: float = Field(FrameOptions.fps, description="RAVDESS: frames sampled per second.")
    video_skip_ms: int = Field(
        FrameOptions.skip_ms, description="RAVDESS: skip this much of each clip's start, where "
        "the actor is still neutral.")
    video_max_height: int = Field(
        FrameOptions.max_height, description="RAVDESS: frames are downscaled to this height "
        "(1280x720 -> 640x360).")
    frame_hash_threshold: int = Field(
        FrameOptions.hash_threshold, description="RAVDESS: drop a frame within this many pHash "
        "bits of the last kept frame.")
    frame_hash_face: bool = Field(
        FrameOptions.hash_face, description="RAVDESS: hash the face found by a Haar cascade "
        "rather than the whole frame.")
    max_pixels: int = Field(
        ReadOptions.max_pixels, description="Images larger than this many pixels (read from "
        "the header, before decoding) are rejected as too_large.")
    on_bad_file: Literal["reject", "error"] = Field(
        "reject", description="reject: a corrupt or unparsable input becomes a reject row and the "
        "run goes on; error: fail the partition on the first one.")

    def read_options(self) -> ReadOptions:
        return ReadOptions(
            ckplus_peak_frames=self.ckplus_peak_frames,
            ckplus_first_frame_neutral=self.ckplus_first_frame_neutral,
            ferplus_labels=self.ferplus_labels,
            frames=FrameOptions(self.video_fps, self.video_skip_ms, self.video_max_height,
                                self.frame_hash_threshold, self.frame_hash_face),
            max_pixels=self.max_pixels,
        )


@asset(
    partitions_def=dataset_partitions,
    group_name="ingest",
    kinds={"python", "parquet"},
    owners=["team:fer-data"],
    code_version="2",
    check_specs=[AssetCheckSpec("inputs_accounted", asset="raw_images", blocking=True,
                                description="every input file or row is a record or a reject")],
)
def raw_images(context: AssetExecutionContext, config: IngestConfig,
               storage_resource: StorageResource) -> MaterializeResult:
    """Every image of one source dataset, decoded from its original downloaded layout into one
    table (lossless PNG bytes, canonical label, subject, official split), plus a rejects table."""
    dataset = context.partition_key
    layout = storage_resource.layout()
    fingerprint = folder_fingerprint(layout.raw_dir / dataset)
    table_path = layout.table("raw_images", dataset)

    def refuse_bad_files(rejects: pa.Table) -> None:  # before the table replaces the old one
        bad = dict(Counter(r for r in rejects.column("reason").to_pylist()
                           if r in BAD_INPUT_REASONS))
        if config.on_bad_file == "error" and bad:
            raise Failure(f"{dataset}: bad inputs {bad} (on_bad_file=error)",
                          metadata={"rejects": counts_table(bad, "reason")})

    with stopwatch() as timing:
        result = ingest_dataset(layout.raw_dir, dataset, config.read_options(), table_path,
                                refuse_bad_files)
    rejects_path = storage.write_table(result.rejects, layout.rejects("raw_images", dataset))
    if result.note:
        context.log.warning(result.note)
    splits = Counter(str(s) for s in result.records.column("official_split").to_pylist())
    subjects = len({s for s in result.records.column("subject_id").to_pylist() if s})
    return MaterializeResult(
        data_version=DataVersion(fingerprint),
        metadata={
            "dagster/row_count": result.records.num_rows,
            "raw_fingerprint": fingerprint,
            "reader": result.reader or "none (no data)",
            "inputs": result.inputs,
            "records": result.records.num_rows,
            "rejects": result.rejects.num_rows,
            "rejects_by_reason": counts_table(result.rejects_by_reason(), "reason"),
            **speed(timing["seconds"], result.inputs),
            "labels": counts_table(result.labels(), "label"),
            "official_splits": counts_table(dict(splits), "split"),
            "subjects": subjects,
            "unused_files": listing(result.unused_files),
            "note": result.note or "",
            "table": MetadataValue.path(str(table_path)),
            "rejects_table": MetadataValue.path(str(rejects_path)),
        },
        check_results=[
            AssetCheckResult(
                check_name="inputs_accounted",
                passed=result.accounted,
                severity=AssetCheckSeverity.ERROR,
                metadata={
                    "inputs": result.inputs,
                    "records": result.records.num_rows,
                    "rejects": result.rejects.num_rows,
                    "unaccounted": listing(result.unaccounted),
                    "unexpected": listing(result.unexpected),
                },
            )
        ],
    )
