"""Thumbnail registration: the correlation of two thumbnails after the one aligns onto the other
by a small shift and scale, for copies that were shifted or cropped by a pixel or two (a
re-export that re-cropped the face, an uploader's augmentation) and so no longer correlate
pixel for pixel.

`registered_correlation` fits, for each pair of standardized square thumbnails (a, b), the warp
p -> centre + (1 + s) (p - centre) + t, with a scale s and a shift t per axis (a crop of
different widths per side is a scale plus a shift), that best maps b onto a: inverse
compositional Lucas-Kanade (Baker and Matthews 2004) over blurred images, coarse to fine
(`LEVELS`: half resolution first, for b and its mirror image; the full-size steps only for the
better of the two, and only where the coarse fit reached COARSE_FLOOR), all pairs of a block at
once in PyTorch. The score is the Pearson correlation of a and the warped b, both under a light
blur (SCORE_SIGMA), over the interior `border` pixels in from each edge, which a warp within the
bounds samples from inside b's frame. The warp is bounded (|t| <= max_shift, |s| <= max_scale:
what a re-crop of a few pixels does), so a face cannot be stretched onto a different one.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

# the fit's levels, coarse to fine: (down-sampling factor, blur sigma in pixels of that size,
# Gauss-Newton steps). Half resolution (a quarter of the pixels) under a wide blur widens the
# basin the steps converge from; the last steps fit the detail at full size
LEVELS = ((2, 1.0, 3), (2, 0.5, 2), (1, 1.0, 2))
# a pair whose blurred half-resolution correlation stays under this after the coarse levels is
# not refined (its score stays that one, under any threshold worth using): 1,000 real FER2013
# faces shifted and re-cropped by 1-2 px reach 0.957 or more there, a median 0.991
COARSE_FLOOR = 0.9
# the score compares both images under this light blur (pixels of the full size): a re-crop
# resized back is a little blurrier than its origin, and a pixel-sharp score held 0.7% of the
# stress set's 1-2 px crops and shifts under 0.96 against their origin; at 0.6, 0.2%. On real
# FER2013 + CK+48 it joins ~270 more same-label pairs left apart, by eye the same photographs
# re-cropped or watermarked (bench/leaks.py draws the least similar)
SCORE_SIGMA = 0.6


@lru_cache(maxsize=8)
def _blur_matrix(side: int, sigma: float) -> torch.Tensor:
    """The (side, side) matrix of a 1-D Gaussian blur with edges replicated."""
    radius = int(np.ceil(2.5 * sigma))
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    matrix = np.zeros((side, side), np.float32)
    for i in range(side):
        for offset, weight in zip(range(-radius, radius + 1), taps / taps.sum(), strict=True):
            matrix[i, min(max(i + offset, 0), side - 1)] += weight
    return torch.from_numpy(matrix)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (n, side, side) images (edges replicated), as two matrix products."""
    k = _blur_matrix(x.shape[-1], sigma)
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


def _fit(ta: torch.Tensor, tb: torch.Tensor, levels, scale: torch.Tensor, shift: torch.Tensor,
         max_shift: float, max_scale: float, border: int):
    """The warp of tb onto ta after the Gauss-Newton steps of `levels` from (scale, shift), and
    the correlation of the blurred images it reaches at the last level."""
    n, side = len(ta), ta.shape[-1]
    for factor, sigma, iterations in levels:
        size = side // factor
        grid, mask = _Grid(size), _interior(size, -(-border // factor))
        fixed, moving = (F.avg_pool2d(x[:, None], factor)[:, 0] if factor > 1 else x
                         for x in (ta, tb))
        # the template: blurred a, its gradients, the steepest-descent images at identity
        template = _standard(_blur(fixed, sigma).reshape(n, -1), mask)
        gy, gx = torch.gradient(template.view(n, size, size), dim=(1, 2))
        gx, gy = gx.reshape(n, -1) * mask, gy.reshape(n, -1) * mask
        descent = (gx * grid.x, gy * grid.y, gx, gy)
        hessian = torch.stack([torch.stack([(u * v).sum(1) for v in descent], 1)
                               for u in descent], 1) + 1e-6 * torch.eye(4)
        inverse = torch.linalg.inv(hessian)
        moving = _blur(moving, sigma)[:, None]
        shift, bound = shift / factor, max_shift / factor
        for _ in range(iterations):
            error = _standard(grid.warp(moving, scale, shift), mask) - template
            step = inverse @ torch.stack([(u * error).sum(1) for u in descent], 1)[:, :, None]
            d_scale, d_shift = 1 + step[:, :2, 0], step[:, 2:, 0]
            # compose with the inverse of the step: p -> (p - d_shift) / d_scale, then the warp
            shift = (shift - scale * d_shift / d_scale).clamp(-bound, bound)
            scale = (scale / d_scale).clamp(1 - max_scale, 1 + max_scale)
        reached = (_standard(grid.warp(moving, scale, shift), mask) * template).sum(1) / mask.sum()
        shift = shift * factor
    return scale, shift, reached


def registered_correlation(a: np.ndarray, alternatives: list[np.ndarray], max_shift: float,
                           max_scale: float, border: int) -> np.ndarray:
    """For rows of flattened square images a (n, side*side, any scale and offset) and one or
    more alternatives for their partners (b, and b's mirror image): the correlation over the
    interior after the partner is warped onto a (see the module docstring). The half-resolution
    levels run for every alternative; the full-size level only for each pair's best, and only
    where that reached COARSE_FLOOR (elsewhere the score is the half-resolution one)."""
    n = len(a)
    if n == 0:
        return np.zeros(0, np.float32)
    side = int(round(np.sqrt(a.shape[1])))

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x, np.float32)).view(-1, side, side)

    with torch.no_grad():
        ta, tbs = tensor(a), [tensor(b) for b in alternatives]
        coarse, fine = LEVELS[:-1], LEVELS[-1:]
        fits = [_fit(ta, tb, coarse, torch.ones(n, 2), torch.zeros(n, 2), max_shift, max_scale,
                     border) for tb in tbs]
        best = torch.stack([f[2] for f in fits]).argmax(0)
        pick = torch.arange(n)
        scale, shift, reached = (torch.stack([f[k] for f in fits])[best, pick] for k in range(3))
        tb = torch.stack(tbs)[best, pick]
        go = reached >= COARSE_FLOOR
        score = reached.clone()
        if go.any():
            scale, shift, _ = _fit(ta[go], tb[go], fine, scale[go], shift[go], max_shift,
                                   max_scale, border)
            mask = _interior(side, border)
            warped = _Grid(side).warp(tb[go][:, None], scale, shift).view(-1, side, side)
            fixed, warped = (_standard(_blur(x, SCORE_SIGMA).reshape(-1, side * side), mask)
                             for x in (ta[go], warped))
            score[go] = (fixed * warped).sum(1) / mask.sum()
    return score.numpy()


def shifted_correlation(a: np.ndarray, alternatives: list[np.ndarray], max_shift: int,
                        border: int) -> np.ndarray:
    """For rows of flattened square images a (n, side*side) and alternatives for their partners
    (b, and b's mirror image): the best Pearson correlation of a's interior (`border` pixels in
    from each edge) with a window of the same size in b moved by whole pixels, up to
    `max_shift` (<= border) each way. No blur, no scale, no iterations: about 50 us a pair on
    one core against the alignment's milliseconds, which is what ranking candidates for the
    alignment needs (a shifted copy's origin ranks above other perturbed copies of it)."""
    n = len(a)
    if n == 0:
        return np.zeros(0, np.float32)
    if not 0 <= max_shift <= border:
        raise ValueError(f"max_shift {max_shift} must lie in 0..border ({border})")
    side = int(round(np.sqrt(a.shape[1])))
    inner, lo, hi = side - 2 * border, border - max_shift, side - border + max_shift

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x, np.float32)).view(-1, 1, side, side)

    with torch.no_grad():
        kernel = tensor(a)[:, :, border:side - border, border:side - border]
        kernel = kernel - kernel.mean((2, 3), keepdim=True)
        kernel = kernel / kernel.flatten(1).norm(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
        best = torch.full((n,), -1.0)
        for b in alternatives:
            window = tensor(b)[:, :, lo:hi, lo:hi].reshape(1, n, hi - lo, hi - lo)
            dots = F.conv2d(window, kernel, groups=n)  # (1, n, 2 max_shift + 1, same)
            # each shifted window's own spread: the box means of b and of b squared
            mean, square = (F.avg_pool2d(x, inner, stride=1) for x in (window, window * window))
            spread = ((square - mean * mean) * inner ** 2).clamp_min(1e-6).sqrt()
            best = torch.maximum(best, (dots / spread).flatten(2).amax(2)[0])
    return best.numpy()


def _interior(side: int, border: int) -> torch.Tensor:
    """(1, side*side): 1 on the pixels at least `border` in from each edge."""
    inner = torch.zeros(side, side)
    inner[border:side - border, border:side - border] = 1
    return inner.view(1, -1)
