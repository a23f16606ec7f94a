"""The quality measures of synthetic faces against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_data.classifier import FaceTensors
from fer_data.quality import fixed_sources, frechet_distance, ssim


def test_ssim_is_one_for_identical_faces_and_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    face = torch.randint(0, 256, (1, 1, 48, 48), generator=g, dtype=torch.uint8)
    smooth = torch.nn.functional.avg_pool2d(face.float(), 3, 1, 1).round().to(torch.uint8)
    noise = [(smooth.float() + torch.randn(1, 1, 48, 48, generator=g) * s).clamp(0, 255)
             .to(torch.uint8) for s in (2, 10, 40)]
    values = [float(ssim(smooth, n)) for n in noise]
    assert float(ssim(smooth, smooth)) == pytest.approx(1.0)
    assert values[0] > values[1] > values[2]
    assert float(ssim(smooth, 255 - smooth)) < 0  # inverted structure


def test_ssim_matches_the_formula_on_a_constant_pair():
    # two flat images: variances and covariance vanish, SSIM = (2ab + c1) / (a^2 + b^2 + c1)
    a = torch.full((1, 1, 16, 16), 100, dtype=torch.uint8)
    b = torch.full((1, 1, 16, 16), 150, dtype=torch.uint8)
    c1 = (0.01 * 255) ** 2
    assert float(ssim(a, b)) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))


def test_frechet_distance_is_zero_for_one_set_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    near, far = frechet_distance(x, x + 0.5), frechet_distance(x, x + 2.0)
    assert near == pytest.approx(4 * 0.25, rel=1e-6) and far == pytest.approx(4 * 4.0, rel=1e-6)


def test_fixed_sources_are_the_same_draw_every_time_and_balanced():
    labels = torch.tensor([0] * 50 + [1] * 5 + [2] * 20)
    faces = FaceTensors(torch.zeros(75, 1, 8, 8, dtype=torch.uint8), labels, ("a", "b", "c"))
    first, again = fixed_sources(faces, 10, seed=3), fixed_sources(faces, 10, seed=3)
    assert torch.equal(first.labels, again.labels)
    assert first.counts().tolist() == [10, 5, 10]
