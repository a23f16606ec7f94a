"""The quality measures of synthetic faces against independent references."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_data.artefacts import judge_dir, split_faces
from fer_data.classifier import FaceTensors
from fer_data.judge import load_judge
from fer_data.quality import (
    RealismFloors,
    RealismMeter,
    checkpoint_scorer,
    fixed_sources,
    frechet_distance,
    ssim,
)
from fer_data.storage import StorageLayout
from stargan.train import PROFILES, build_models


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


def test_realism_floors_name_each_figure_they_miss_and_nan_never_passes():
    floors = RealismFloors()
    good = {"identity_ssim": 0.95, "ssim_to_source": 0.7, "eyes_ratio": 0.9, "frechet": 5.0,
            "frechet_ceiling": 8.0}
    assert floors.failures(good) == []
    assert floors.failures({**good, "frechet": 0.95 * 8.0}) == []
    bad = {**good, "identity_ssim": 0.5, "eyes_ratio": math.nan, "frechet": 7.9}
    failures = floors.failures(bad)
    assert [f.split()[0] for f in failures] == ["identity_ssim", "eyes_ratio", "frechet"]
    assert "0.500 < 0.9" in failures[0]


class Unchanged(torch.nn.Module):
    """A 'generator' that gives every face back as it is."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, c):
        return x


class Blurred(Unchanged):
    """A 'generator' that blurs every face (5x5 box), as a too-small bottleneck does."""

    def forward(self, x, c):
        return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


@pytest.fixture(scope="module")
def demo_meter(demo_pipeline):
    root, _ = demo_pipeline
    layout = StorageLayout.from_env(storage_dir=str(root / "storage"))
    judge, _ = load_judge(judge_dir(layout))
    real = split_faces(layout, "fer7")
    # the demo's validation split holds too few disgust faces for a covariance: the training
    # split's are the reference here
    return RealismMeter(fixed_sources(real["val"], 60), real["train"], judge, "disgust", 48)


def test_untrained_blurring_and_do_nothing_generators_are_ineligible(demo_meter):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        untrained = build_models(replace(PROFILES["cpu"], c_dim=7, g_output="image")).G
    score = checkpoint_scorer(demo_meter)
    figures = {name: score(G) for name, G in
               (("untrained", untrained), ("blurred", Blurred()), ("unchanged", Unchanged()))}
    assert all(f["eligible"] == 0 for f in figures.values())
    floors = RealismFloors()
    # the face given back is its own source: every similarity is perfect, and the Frechet
    # distance is the ceiling itself, so only that floor stops it
    unchanged = figures["unchanged"]
    assert unchanged["identity_ssim"] == pytest.approx(1) and unchanged["eyes_ratio"] == 1
    assert unchanged["frechet"] == pytest.approx(unchanged["frechet_ceiling"])
    assert [f.split()[0] for f in floors.failures(unchanged)] == ["frechet"]
    # a blur keeps the layout but not the detail: it loses identity fidelity and eyes
    blurred = figures["blurred"]
    assert blurred["identity_ssim"] < floors.min_identity_ssim
    assert blurred["eyes_ratio"] < unchanged["eyes_ratio"]
    assert figures["untrained"]["identity_ssim"] < 0.3
