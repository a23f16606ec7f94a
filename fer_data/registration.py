"""Thumbnail registration: the correlation of two thumbnails after the one aligns onto the other
by a small shift and scale, for copies that were shifted or cropped by a pixel or two (a
re-export that re-cropped the face, an uploader's augmentation) and so no longer correlate
pixel for pixel.

`registered_correlation` fits, for each pair of standardized square thumbnails (a, b), the warp
p -> centre + (1 + s) (p - centre) + t, with a scale s and a shift t per axis (a crop of
different widths per side is a scale plus a shift), that best maps b onto a: inverse
compositional Lucas-Kanade (Baker and Matthews 2004) over blurred images, all pairs of a block at
once in PyTorch. The score is the Pearson correlation of a and the warped b, neither blurred,
over the interior `border` pixels in from each edge, which a warp within the bounds samples from
inside b's frame. The warp is bounded (|t| <= max_shift, |s| <= max_scale: what a re-crop of a
few pixels does), so a face cannot be stretched onto a different one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# (blur sigma in thumbnail pixels, Gauss-Newton steps): the wide blur first widens the basin
# the steps converge from, the narrow one then fits the detail
LEVELS = ((2.0, 3), (1.0, 4))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (n, side, side) images (edges replicated), as two matrix products."""
    side = x.shape[-1]
    radius = int(np.ceil(2.5 * sigma))
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    matrix = np.zeros((side, side), np.float32)
    for i in range(side):
        for offset, weight in zip(range(-radius, radius + 1), taps / taps.sum(), strict=True):
            matrix[i, min(max(i + offset, 0), side - 1)] += weight
    k = torch.from_numpy(matrix)
    return k @ x @ k.T


def _standard(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rows (n, pixels) standardized over the mask's pixels, zero elsewhere."""
    count = mask.sum()
    x = (x - (x * mask).sum(1, keepdim=True) / count) * mask
    return x / (x.pow(2).sum(1, keepdim=True) / count).clamp_min(1e-12).sqrt()


class _Grid:
    """The pixel centres of a side x side image, relative to its centre, and the warp that
    samples an image at centre + scale (p - centre) + shift (grid_sample's normalized units)."""

    def __init__(self, side: int):
        coords = torch.arange(side, dtype=torch.float32) - (side - 1) / 2
        y, x = torch.meshgrid(coords, coords, indexing="ij")
        self.side, self.x, self.y = side, x.reshape(1, -1), y.reshape(1, -1)

    def warp(self, image: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        n, half = len(image), self.side / 2
        gx = (scale[:, :1] * self.x + shift[:, :1]) / half
        gy = (scale[:, 1:] * self.y + shift[:, 1:]) / half
        grid = torch.stack([gx, gy], dim=2).view(n, self.side, self.side, 2)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border",
                             align_corners=False).view(n, -1)


def registered_correlation(a: np.ndarray, b: np.ndarray, max_shift: float, max_scale: float,
                           border: int) -> np.ndarray:
    """For rows of flattened square images a and b (n, side*side, any scale and offset): the
    correlation over the interior after b is warped onto a (see the module docstring)."""
    n = len(a)
    if n == 0:
        return np.zeros(0, np.float32)
    side = int(round(np.sqrt(a.shape[1])))
    grid = _Grid(side)
    with torch.no_grad():
        ta = torch.from_numpy(np.ascontiguousarray(a, np.float32)).view(n, side, side)
        tb = torch.from_numpy(np.ascontiguousarray(b, np.float32)).view(n, side, side)
        inner = torch.zeros(side, side)
        inner[border:side - border, border:side - border] = 1
        mask = inner.view(1, -1)
        scale, shift = torch.ones(n, 2), torch.zeros(n, 2)
        for sigma, iterations in LEVELS:  # coarse to fine
            # the template: blurred a, its gradients, the steepest-descent images at identity
            template = _standard(_blur(ta, sigma).reshape(n, -1), mask)
            gy, gx = torch.gradient(template.view(n, side, side), dim=(1, 2))
            gx, gy = gx.reshape(n, -1) * mask, gy.reshape(n, -1) * mask
            descent = (gx * grid.x, gy * grid.y, gx, gy)
            hessian = torch.stack([torch.stack([(u * v).sum(1) for v in descent], 1)
                                   for u in descent], 1) + 1e-6 * torch.eye(4)
            inverse = torch.linalg.inv(hessian)
            moving = _blur(tb, sigma)[:, None]
            for _ in range(iterations):
                error = _standard(grid.warp(moving, scale, shift), mask) - template
                step = inverse @ torch.stack([(u * error).sum(1) for u in descent], 1)[:, :, None]
                d_scale, d_shift = 1 + step[:, :2, 0], step[:, 2:, 0]
                # compose with the inverse of the step: p -> (p - d_shift) / d_scale, then the warp
                shift = (shift - scale * d_shift / d_scale).clamp(-max_shift, max_shift)
                scale = (scale / d_scale).clamp(1 - max_scale, 1 + max_scale)
        warped = _standard(grid.warp(tb[:, None], scale, shift), mask)
        score = (_standard(ta.reshape(n, -1), mask) * warped).sum(1) / mask.sum()
    return score.numpy()
