"""`stargan_model` and `synthetic_faces`: learn expressions, then top up the rare class."""

from collections import Counter
from dataclasses import asdict
from typing import Literal

import torch
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
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
from fer_data.artefacts import judge_dir, split_faces
from fer_data.augment import (
    load_training_faces,
    read_model_record,
    resolve_profile,
    train_generator,
)
from fer_data.defs.executor import GPU_STEP_TAGS
from fer_data.defs.metadata import counts_table
from fer_data.defs.resources import FaceDetector, PipelineSettings, StorageResource
from fer_data.judge import load_judge
from fer_data.previews import markdown_image
from fer_data.storage import ALL
from fer_data.synthesis import (
    GateOptions,
    SynthesisResult,
    sample_pairs_png,
    sources_by_class,
    synthesize,
    top_up_plan,
    write_gate_report,
)
from stargan.generate import load_trained


class StarGanConfig(Config):
    profile: Literal["auto", "smoke", "cpu", "full"] = Field(
        "auto", description="auto: smoke for a demo-sized training set (< 5,000 faces), full "
        "on a CUDA machine, else cpu. smoke: CPU minutes (demo, CI); cpu: 2 CPU cores, about "
        "40 minutes on real data; full: GPU, official recipe, 64 px, bf16.")
    num_iters: int = Field(0, description="Override the profile's iterations (0 = keep).")
    device: Literal["profile", "cpu", "cuda"] = Field("profile", description="Override the "
                                                      "profile's device.")
    max_minutes: float = Field(0.0, description="Stop after this much training (a segment; "
                               "materialize again to resume). 0: train to the end.")
    checkpoint_every: int = Field(0, description="Save (and rate) a checkpoint every this many "
                                  "iterations (0 = the profile's); a stopped run resumes from "
                                  "the last one.")
    seed: int = Field(0, description="Seeds weights, batches, targets and the penalty mix.")


@asset(
    deps=["splits", "face_crops", "expression_judge"],
    group_name="augment",
    kinds={"pytorch"},
    owners=["team:fer-data"],
    code_version="3",
    automation_condition=AutomationCondition.eager(),
    pool="gpu",
    op_tags=GPU_STEP_TAGS,
)
def stargan_model(context: AssetExecutionContext, config: StarGanConfig,
                  storage_resource: StorageResource,
                  settings: PipelineSettings) -> MaterializeResult:
    """A StarGAN trained on the real training-split faces (never val/test), one domain per class
    of the pipeline's class set; each checkpoint rated by the judge on held-back faces, the best
    kept, with its quality report. Resumes from its last checkpoint."""
    layout = storage_resource.layout()
    judge, judge_metrics = load_judge(judge_dir(layout))
    real = split_faces(layout, settings.class_set)
    profile = resolve_profile(config.profile, len(real["train"]), torch.cuda.is_available())
    run = train_generator(layout, profile, settings.class_set, judge, judge_metrics, real,
                          settings.target_class, config.seed, config.num_iters, config.device,
                          config.max_minutes, log=context.log.info,
                          checkpoint_every=config.checkpoint_every)
    report = run.report
    return MaterializeResult(metadata={
        "profile": profile,
        "checkpoint": MetadataValue.path(str(run.checkpoint)),
        "sha256": report["sha256"],
        "step": run.trained.step,
        "training_minutes": report["training_minutes"],
        "training_faces": len(run.data.labels),
        "faces_per_class": counts_table(dict(Counter(run.data.rows["label"].to_pylist())),
                                        "class"),
        "config": MetadataValue.json(asdict(run.trained.config)),
        "judge_hit_rate": round(report["judge_hit_rate"], 4),
        "judge_real_recall": round(report["judge_real_recall"], 4),
        "ssim_to_source": round(report["ssim_to_source"], 4),
        "quality_report": MetadataValue.json(report),
        "translation_grid": MetadataValue.md(
            "Rows: a real held-back face per class; columns: the source, then each target "
            f"class ({', '.join(run.data.classes)}).\n\n"
            + markdown_image(run.figures["translation_grid.png"], "translation grid")),
        "judge_hit_rate_curve": MetadataValue.md(markdown_image(
            run.figures["judge_hit_rate.png"], "judge hit rate")),
        "loss_curves": MetadataValue.md(markdown_image(run.figures["loss_curves.png"],
                                                       "loss curves")),
    })


class SynthesisConfig(Config):
    min_target_prob: float = Field(
        GateOptions.min_target_prob, description="Gate: the judge must rank the target class "
        "first and give it at least this probability.")
    min_source_distance: int = Field(
        GateOptions.min_source_distance, description="Gate: pHash bits from the source face.")
    min_real_distance: int = Field(
        GateOptions.min_real_distance, description="Gate: pHash bits from every real training "
        "face (memorization).")
    max_attempts_factor: int = Field(
        GateOptions.max_attempts_factor, description="Gate: give up after this many source "
        "faces per wanted face.")
    seed: int = Field(0, description="Seeds the order in which sources are drawn.")
    use_ineligible_generator: bool = Field(False, description="Publish synthetic faces even "
                                           "when the generator misses the realism floors (its "
                                           "report says which). Off: none are published.")


@asset(
    deps=["stargan_model", "expression_judge", "splits", "face_crops"],
    group_name="augment",
    kinds={"pytorch", "parquet"},
    owners=["team:fer-data"],
    code_version="4",
    automation_condition=AutomationCondition.eager(),
    check_specs=[AssetCheckSpec("realism_floors", asset="synthetic_faces", blocking=False,
                                description="the generator clears the realism floors (identity "
                                "SSIM, SSIM to source, eyes found, Frechet distance); if not, "
                                "no synthetic faces are published unless forced")],
)
def synthetic_faces(context: AssetExecutionContext, config: SynthesisConfig,
                    storage_resource: StorageResource, face_detector: FaceDetector,
                    settings: PipelineSettings) -> MaterializeResult:
    """Synthetic target-class faces for the training split, each traced to its source face and
    generator checkpoint, and only those that pass the quality gate. Uses the generator that
    stargan_model recorded last (its profile and class set)."""
    layout = storage_resource.layout()
    record = read_model_record(layout)
    target = record.get("target")
    if target != settings.target_class:
        raise ValueError(f"the recorded generator was chosen for target {target!r}, the "
                         f"settings say {settings.target_class!r}: materialize stargan_model")
    trained = load_trained(record["checkpoint"])
    judge, _ = load_judge(judge_dir(layout))
    data = load_training_faces(layout, record["class_set"], trained.config.image_size)
    have, goal, needed = top_up_plan(data.rows, target, settings.top_up_to)
    generator = f"sha256={record['sha256']} step={trained.step} seed={config.seed}"
    gate = GateOptions(config.min_target_prob, config.min_source_distance,
                       config.min_real_distance, config.max_attempts_factor)
    eligible = bool(record.get("eligible"))
    failures = record.get("floor_failures") or ["no realism figures recorded: materialize "
                                                 "stargan_model again"]
    if eligible or config.use_ineligible_generator:
        result = synthesize(trained, data, target, needed, generator, config.seed,
                            gate, judge, face_detector.get("haar_quality"))
        withheld = []
    else:
        result = SynthesisResult.empty(needed)
        withheld = failures
        context.log.warning("no synthetic faces published: the generator misses the realism "
                            "floors (" + "; ".join(failures) + "); set "
                            "synthetic_faces.use_ineligible_generator to publish them anyway")
    out = storage.write_table(result.rows, layout.table("synthetic_faces", ALL))
    storage.write_table(result.rejects, layout.rejects("synthetic_faces", ALL))
    report = write_gate_report(layout, record, result, withheld)
    made = result.rows.num_rows
    if made < needed and not withheld:
        context.log.warning(f"only {made} of {needed} synthetic {target} faces "
                            f"passed the gate in {result.attempts} attempts")
    sheet = sample_pairs_png(result.pairs, 32, config.seed)
    check = AssetCheckResult(
        check_name="realism_floors", passed=eligible, severity=AssetCheckSeverity.WARN,
        metadata={"failures": "; ".join(failures) if not eligible else "none",
                  "published": "no (withheld)" if withheld else "yes",
                  "forced": config.use_ineligible_generator})
    return MaterializeResult(check_results=[check], metadata={
        "published": "none: " + "; ".join(withheld) if withheld else "yes",
        "dagster/row_count": made,
        "target": f"{target}: {have} real -> {have + made} (goal {goal})",
        "needed": needed,
        "generated": made,
        "attempts": result.attempts,
        "gate_pass_rate": report["gate_pass_rate"],
        "eyes_found": MetadataValue.md(
            "Both eyes found by OpenCV's eye cascade (faces.eyes_found): {synthetic} of "
            "synthetic faces, {their_sources} of their sources ({pairs} pairs)".format(
                **report["eyes_found"])),
        "rejects_by_reason": counts_table(dict(Counter(result.rejects["reason"].to_pylist())),
                                          "reason"),
        "sources_by_class": counts_table(sources_by_class(data, result.rows), "class"),
        "generator": generator,
        "samples": MetadataValue.md(f"Pairs: source, then its synthetic {target}."
                                    "\n\n" + markdown_image(sheet, "samples")),
        "table": MetadataValue.path(str(out)),
    })
