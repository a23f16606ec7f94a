"""Using a trained StarGAN: load it from a checkpoint, translate faces, score them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from stargan.model import Discriminator, Generator
from stargan.train import TrainConfig, build_models, label2onehot, load_checkpoint


@dataclass
class Trained:
    G: Generator
    D: Discriminator
    config: TrainConfig
    step: int
    history: list[dict]


def load_trained(path: Path, device: str = "cpu") -> Trained:
    state = load_checkpoint(path, device)
    config = TrainConfig(**{**state["config"], "device": device})
    models = build_models(config)
    models.G.load_state_dict(state["G"])
    models.D.load_state_dict(state["D"])
    if models.G_ema is not None:
        models.G_ema.load_state_dict(state["G_ema"])
    # eval mode matters: the official test code left G in train mode, so its InstanceNorm used
    # per-batch statistics of the test batch and users got broken images
    models.generator.eval()
    models.D.eval()
    return Trained(models.generator, models.D, config, state["step"], state["history"])


@torch.no_grad()
def translate(G: Generator, images: torch.Tensor, targets: torch.Tensor, c_dim: int,
              batch_size: int = 64) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] -> the same faces in the target domains."""
    G.eval()
    device = next(G.parameters()).device
    out = [G(images[i:i + batch_size].to(device),
             label2onehot(targets[i:i + batch_size].to(device), c_dim)).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else images[:0]
