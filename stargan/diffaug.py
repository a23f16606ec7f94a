"""Differentiable augmentation for the discriminator's inputs (DiffAugment, Zhao et al.,
NeurIPS 2020): every image D sees, real or generated, in D's step and in G's, gets the same kind
of random change, so D cannot memorise a few hundred real faces of a rare class and G is never
taught the augmentation itself. All draws come from the training run's seeded generator, so a
resumed run continues the same curve.

    x = diff_augment(x, "color,translation,cutout", rng)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    names = tuple(p for p in policy.split(",") if p)
    unknown = sorted(set(names) - set(POLICIES))
    if unknown:
        raise ValueError(f"diffaug {policy!r}: unknown {unknown}; choose from {POLICIES}")
    return names


def _uniform(n: int, low: float, high: float, rng: torch.Generator, like: torch.Tensor):
    return (torch.rand(n, 1, 1, 1, generator=rng) * (high - low) + low).to(like)


def color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Brightness (+-0.5 in [-1, 1] units) and contrast (x0.5-1.5 around each image's mean)."""
    x = x + _uniform(len(x), -0.5, 0.5, rng, x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(len(x), 0.5, 1.5, rng, x) + mean


def translation(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its side in whole pixels, zero-filled."""
    n, _, h, w = x.shape
    shift = torch.randint(-int(h * ratio), int(h * ratio) + 1, (n, 2), generator=rng)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shift[:, 0] / w
    theta[:, 1, 2] = -2 * shift[:, 1] / h
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of `ratio` x the side at a random place in each image."""
    n, _, h, w = x.shape
    size = int(h * ratio), int(w * ratio)
    corner = torch.stack([torch.randint(0, h - size[0] + 1, (n,), generator=rng),
                          torch.randint(0, w - size[1] + 1, (n,), generator=rng)], dim=1)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = ((rows >= corner[:, 0].view(n, 1, 1)) & (rows < (corner[:, 0] + size[0]).view(n, 1, 1))
              & (cols >= corner[:, 1].view(n, 1, 1))
              & (cols < (corner[:, 1] + size[1]).view(n, 1, 1)))
    return x * (~inside).unsqueeze(1).to(x)


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...], rng: torch.Generator
                 ) -> torch.Tensor:
    """`x` with each transform of the policy applied in order (none: `x` itself)."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    for name in names:
        x = {"color": color, "translation": translation, "cutout": cutout}[name](x, rng)
    return x
