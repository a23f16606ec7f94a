"""`vit_baseline`: the downstream proof, on demand (not part of `make run`)."""

from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from fer_data.defs.executor import GPU_STEP_TAGS
from fer_data.defs.resources import StorageResource
from fer_data.previews import markdown_image
from fer_data.train_vit import VitConfig, train_vit


class VitBaselineConfig(Config):
    class_set: str = Field("fer7", description="Published class set to train on.")
    epochs: int = Field(30, description="Epochs per variant.")
    max_steps: int = Field(0, description="Stop each variant after this many steps (0 = all).")
    batch_size: int = Field(128, description="Batch size.")
    device: str = Field("auto", description="auto, cpu or cuda.")


@asset(
    deps=["curated_dataset"],
    group_name="evaluate",
    kinds={"pytorch"},
    owners=["team:fer-data"],
    code_version="1",
    pool="gpu",
    op_tags=GPU_STEP_TAGS,
)
def vit_baseline(context: AssetExecutionContext, config: VitBaselineConfig,
                 storage_resource: StorageResource) -> MaterializeResult:
    """ViT-Tiny trained with and without the synthetic faces, compared on the real test split."""
    curated = Path(str(storage_resource.layout().curated_dir)) / config.class_set
    runs = Path(str(storage_resource.layout().storage_dir)) / "vit_baseline"
    results = {}
    for variant in ("exclude", "include"):
        vit = VitConfig(data=str(curated), out=str(runs / variant), epochs=config.epochs,
                        max_steps=config.max_steps, batch_size=config.batch_size,
                        synthetic=variant, device=config.device)
        results[variant] = train_vit(vit, log=context.log.info)
    table = ("| synthetic | train rows | accuracy | macro-F1 | disgust F1 |\n"
             "|---|---:|---:|---:|---:|\n")
    table += "\n".join(f"| {v} | {r['train_rows']:,} | {r['accuracy']:.4f} | "
                       f"{r['macro_f1']:.4f} | {r['disgust_f1']:.4f} |" for v, r in results.items())
    return MaterializeResult(metadata={
        "comparison": MetadataValue.md(table),
        "confusion_with_synthetic": MetadataValue.md(markdown_image(
            (runs / "include" / "confusion_matrix.png").read_bytes(), "confusion matrix")),
        "runs": MetadataValue.path(str(runs)),
    })
