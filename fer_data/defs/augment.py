"""`stargan_model` and `synthetic_faces`: learn expressions, then top up the rare class."""

from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal

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
from fer_data.augment import (
    GateOptions,
    load_training_faces,
    loss_plot_png,
    sample_pairs_png,
    synthesize,
    target_count,
    translation_grid,
    write_png,
)
from fer_data.defs.executor import GPU_STEP_TAGS
from fer_data.defs.metadata import counts_table
from fer_data.defs.resources import StorageResource
from fer_data.images import encode_png
from fer_data.previews import markdown_image
from fer_data.storage import ALL
from stargan.generate import load_trained
from stargan.train import PROFILES, file_sha256, train


class StarGanConfig(Config):
    profile: Literal["smoke", "full"] = Field("smoke", description="smoke: CPU minutes (demo, "
                                              "CI); full: GPU, official widths, 64 px, AMP.")
    num_iters: int = Field(0, description="Override the profile's iterations (0 = keep).")
    device: Literal["profile", "cpu", "cuda"] = Field("profile", description="Override the "
                                                      "profile's device.")
    seed: int = Field(0, description="Seeds weights, batches, targets and the penalty mix.")
    class_set: str = Field("fer7", description="Domains = the classes of this class set.")


def checkpoint_dir(storage_resource: StorageResource, profile: str) -> Path:
    layout = storage_resource.layout()
    if not storage.is_local(layout.storage_dir):
        raise ValueError("StarGAN checkpoints need a local storage root (torch.save)")
    return Path(layout.storage_dir) / "stargan_model" / profile


@asset(
    deps=["splits"],
    group_name="augment",
    kinds={"pytorch"},
    owners=["team:fer-data"],
    code_version="1",
    automation_condition=AutomationCondition.eager(),
    pool="gpu",
    op_tags=GPU_STEP_TAGS,
)
def stargan_model(context: AssetExecutionContext, config: StarGanConfig,
                  storage_resource: StorageResource) -> MaterializeResult:
    """A StarGAN trained on the real training-split faces (never val/test), one domain per class;
    resumes from its last checkpoint."""
    layout = storage_resource.layout()
    data = load_training_faces(layout, config.class_set)
    profile = PROFILES[config.profile]
    train_config = replace(profile, c_dim=len(data.classes), domains=list(data.classes),
                           seed=config.seed, image_size=int(data.images.shape[-1]),
                           num_iters=config.num_iters or profile.num_iters,
                           device=profile.device if config.device == "profile" else config.device)
    out = checkpoint_dir(storage_resource, config.profile)
    path = train(train_config, data.images, data.labels, out, log=context.log.info)
    trained = load_trained(path)
    grid = encode_png(translation_grid(trained, data))
    losses = loss_plot_png(trained.history)
    write_png(out / "translation_grid.png", grid)
    write_png(out / "loss_curves.png", losses)
    last = trained.history[-1] if trained.history else {}
    return MaterializeResult(metadata={
        "checkpoint": MetadataValue.path(str(path)),
        "sha256": file_sha256(path),
        "step": trained.step,
        "training_faces": len(data.labels),
        "faces_per_class": counts_table(dict(Counter(data.rows["label"].to_pylist())), "class"),
        "config": MetadataValue.json(asdict(trained.config)),
        "final_losses": MetadataValue.json({k: round(v, 4) for k, v in last.items()}),
        "translation_grid": MetadataValue.md(
            "Rows: a real face per class; columns: the source, then each target class "
            f"({', '.join(data.classes)}).\n\n" + markdown_image(grid, "translation grid")),
        "loss_curves": MetadataValue.md(markdown_image(losses, "loss curves")),
    })


class SynthesisConfig(Config):
    profile: Literal["smoke", "full"] = Field("smoke", description="Which trained model to use.")
    class_set: str = Field("fer7", description="Class set the model was trained on.")
    target_class: str = Field("disgust", description="The class to top up.")
    target_count: str = Field("fear", description="Bring the target class up to this class's "
                              "training count, 'max' (the largest class) or a number.")
    min_target_prob: float = Field(0.5, description="Gate: discriminator's probability for the "
                                   "target class.")
    min_source_distance: int = Field(6, description="Gate: pHash bits from the source face.")
    min_real_distance: int = Field(6, description="Gate: pHash bits from every real training "
                                   "face (memorization).")
    seed: int = Field(0, description="Seeds the order in which sources are drawn.")


@asset(
    deps=["stargan_model", "face_index"],
    group_name="augment",
    kinds={"pytorch", "parquet"},
    owners=["team:fer-data"],
    code_version="1",
    automation_condition=AutomationCondition.eager(),
)
def synthetic_faces(context: AssetExecutionContext, config: SynthesisConfig,
                    storage_resource: StorageResource) -> MaterializeResult:
    """Synthetic target-class faces for the training split, each traced to its source face and
    generator checkpoint, and only those that pass the quality gate."""
    layout = storage_resource.layout()
    data = load_training_faces(layout, config.class_set)
    path = checkpoint_dir(storage_resource, config.profile) / "checkpoint.pt"
    trained = load_trained(path)
    if list(trained.config.domains) != list(data.classes):
        raise ValueError(f"{path} was trained on {trained.config.domains}, not {data.classes}")
    counts = Counter(data.rows["label"].to_pylist())
    have = counts.get(config.target_class, 0)
    goal = target_count(dict(counts), config.target_class, config.target_count)
    needed = max(goal - have, 0)
    generator = f"sha256={file_sha256(path)} step={trained.step} seed={config.seed}"
    gate = GateOptions(config.min_target_prob, config.min_source_distance,
                       config.min_real_distance)
    result = synthesize(trained, data, config.target_class, needed, generator, config.seed, gate)
    out = storage.write_table(result.rows, layout.table("synthetic_faces", ALL))
    storage.write_table(result.rejects, layout.rejects("synthetic_faces", ALL))
    sheet = sample_pairs_png(result.pairs, 32, config.seed)
    made = result.rows.num_rows
    if made < needed:
        context.log.warning(f"only {made} of {needed} synthetic {config.target_class} faces "
                            f"passed the gate in {result.attempts} attempts")
    return MaterializeResult(metadata={
        "dagster/row_count": made,
        "target": f"{config.target_class}: {have} real -> {have + made} (goal {goal})",
        "needed": needed,
        "generated": made,
        "attempts": result.attempts,
        "rejects_by_reason": counts_table(dict(Counter(result.rejects["reason"].to_pylist())),
                                          "reason"),
        "sources_by_class": counts_table(dict(Counter(
            data.rows["label"][i].as_py() for i in _source_rows(data, result))), "class"),
        "generator": generator,
        "samples": MetadataValue.md("Pairs: source, then its synthetic "
                                    f"{config.target_class}.\n\n" + markdown_image(sheet,
                                                                                   "samples")),
        "table": MetadataValue.path(str(out)),
    })


def _source_rows(data, result) -> list[int]:
    index = {image_id: i for i, image_id in enumerate(data.rows["image_id"].to_pylist())}
    return [index[s] for s in result.rows["source_image_id"].to_pylist()]
