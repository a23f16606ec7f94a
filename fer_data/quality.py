"""How good synthetic faces are, measured with the independent judge (an expression classifier
trained on real training faces only, fer_data.evaluate) rather than the GAN's own
discriminator, which the generator is trained to please:

- hit rate: the share of translations into a class that the judge calls that class;
- SSIM to the source face (structure kept: the same person, a new expression);
- Frechet distance in the judge's feature space between synthetic and real test faces of the
  target class, beside the same distance for real training faces (the floor) and for the
  untranslated sources (the ceiling).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from fer_data.classifier import FaceTensors, to_float
from fer_data.detectors import eyes_found
from fer_data.figures import figure_png, pyplot
from fer_data.judge import Judge
from stargan.generate import translate


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004, Gaussian window) of each pair of uint8
    gray faces (N, 1, S, S); 1 = identical. A 7-px window suits 48-px faces."""
    a, b = a.double(), b.double()
    x = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, window, window)

    def blur(t):
        return F.conv2d(t, kernel)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / \
        ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.mean(dim=(1, 2, 3))


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^1/2) between two feature sets."""
    if len(x) < 2 or len(y) < 2:
        return math.nan
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = linalg.sqrtm(s_x @ s_y)
    root = root.real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(s_x + s_y - 2 * root))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Faces (N, C, S, S) to size x size: the boundary between the published face size and the
    generator's image size, so the two never have to agree."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)


def to_uint8(images: torch.Tensor, size: int | None = None) -> np.ndarray:
    """Generator output in [-1, 1] -> gray uint8 faces (N, S, S), resized to `size`."""
    images = resize(images, size or images.shape[-1])
    return ((images.squeeze(1).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def to_gan(faces: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 faces -> the generator's input: [-1, 1] at its image size."""
    return resize(to_float(faces), image_size)


def from_gan(images: torch.Tensor, face_size: int) -> torch.Tensor:
    """Generator output -> uint8 faces (N, 1, S, S) at the published face size."""
    return torch.from_numpy(to_uint8(images, face_size)).unsqueeze(1)


def fixed_sources(faces: FaceTensors, per_class: int, seed: int = 0) -> FaceTensors:
    """Up to `per_class` faces of every class, drawn once with a seeded generator: the fixed
    set every checkpoint and every report is measured on."""
    rng = np.random.default_rng(seed)
    labels = faces.labels.numpy()
    rows = []
    for k in range(len(faces.classes)):
        members = np.flatnonzero(labels == k)
        rows += sorted(rng.permutation(members)[:per_class].tolist())
    return faces.subset(np.array(rows, dtype=np.int64))


@dataclass
class Translated:
    """The sources of every class but one, their translations into it (uint8), and how the
    judge sees them."""

    source: torch.Tensor
    fake: torch.Tensor
    hit_rate: float  # share the judge ranks as the target class
    ssim_to_source: float
    hits: torch.Tensor  # (N,) bool: the judge ranks this translation as the target class

    def scores(self) -> dict:
        return {"hit_rate": self.hit_rate, "ssim_to_source": self.ssim_to_source,
                "faces": len(self.source)}


def translated(G, sources: FaceTensors, target: int, judge: Judge,
               image_size: int) -> Translated:
    """Translate the sources of every class but `target` into it and judge the result."""
    src = sources.images[sources.labels != target]
    fake = from_gan(translate(G, to_gan(src, image_size), torch.full((len(src),), target),
                              len(sources.classes)), sources.size)
    hits = judge.probabilities(fake).argmax(1) == target
    return Translated(src, fake, float(hits.float().mean()), float(ssim(fake, src).mean()),
                      hits)


def hit_rates(G, sources: FaceTensors, judge: Judge, image_size: int) -> dict[str, dict]:
    """Per target class: the judge's hit rate and the mean SSIM of translations to source."""
    out = {}
    for k, name in enumerate(sources.classes):
        result = translated(G, sources, k, judge, image_size)
        if len(result.source):
            out[name] = result.scores()
    return out


@dataclass(frozen=True)
class RealismFloors:
    """What a generator must clear before its faces may be used: a checkpoint missing any floor
    is ineligible, however often the judge agrees with its translations."""

    min_identity_ssim: float = 0.90  # G(x, x's own class) must give x back
    min_ssim_to_source: float = 0.65  # a translation keeps its source's face (a 12x12
    # thumbnail blown back up scores about 0.6; a 24x24 one about 0.88)
    min_eyes_ratio: float = 0.75  # both eyes found in synthetic / in their sources
    max_frechet_share: float = 0.95  # Frechet distance to real target faces at most this
    # share of the untranslated sources' (the ceiling): clearly closer to the target class than
    # the sources, so a generator that gives faces back nearly unchanged does not pass

    def failures(self, figures: dict) -> list[str]:
        """The floors `figures` (from `realism`) miss, each as a readable sentence."""
        out = []
        checks = (("identity_ssim", self.min_identity_ssim),
                  ("ssim_to_source", self.min_ssim_to_source),
                  ("eyes_ratio", self.min_eyes_ratio))
        for name, floor in checks:
            if not figures[name] >= floor:  # NaN fails
                out.append(f"{name} {figures[name]:.3f} < {floor}")
        bound = self.max_frechet_share * figures["frechet_ceiling"]
        if not figures["frechet"] <= bound:
            out.append(f"frechet {figures['frechet']:.2f} > {self.max_frechet_share} x its "
                       f"ceiling (the untranslated sources' {figures['frechet_ceiling']:.2f})")
        return out


def identity_ssim(G, sources: FaceTensors, image_size: int) -> float:
    """Mean SSIM of G(x, x's own class) to x: what a translation into nowhere keeps."""
    same = from_gan(translate(G, to_gan(sources.images, image_size), sources.labels,
                              len(sources.classes)), sources.size)
    return float(ssim(same, sources.images).mean())


class RealismMeter:
    """Rates a generator on fixed held-back faces: identity fidelity, the target translations'
    SSIM to source, eyes found (synthetic / sources), the Frechet distance in the judge's
    features to real target faces beside its ceiling (the untranslated sources), and the
    judge's hit rate. What depends only on the real faces is computed once."""

    def __init__(self, sources: FaceTensors, reference: FaceTensors, judge: Judge, target: str,
                 image_size: int):
        self.sources, self.judge, self.image_size = sources, judge, image_size
        self.k = sources.classes.index(target)
        src = sources.images[sources.labels != self.k]
        self.source_labels = sources.labels[sources.labels != self.k]
        self.reference = judge.features(reference.images[reference.labels == self.k])
        self.source_eyes = float(eyes_found(list(src[:, 0].numpy())).mean()) if len(src) else 0
        self.ceiling = frechet_distance(judge.features(src), self.reference)

    def __call__(self, G) -> dict[str, float]:
        result = translated(G, self.sources, self.k, self.judge, self.image_size)
        eyes = float(eyes_found(list(result.fake[:, 0].numpy())).mean()) \
            if len(result.fake) else 0.0
        by_source = {f"hit_rate_from_{name}": float(result.hits[self.source_labels == j]
                                                    .float().mean())
                     for j, name in enumerate(self.sources.classes)
                     if bool((self.source_labels == j).any())}
        return {"judge_hit_rate": result.hit_rate, "ssim_to_source": result.ssim_to_source,
                **by_source,
                "identity_ssim": identity_ssim(G, self.sources, self.image_size),
                "eyes_ratio": eyes / self.source_eyes if self.source_eyes else math.nan,
                "frechet": frechet_distance(self.judge.features(result.fake), self.reference),
                "frechet_ceiling": self.ceiling}


def checkpoint_scorer(meter: RealismMeter, floors: RealismFloors | None = None):
    """A scorer for stargan.train: the realism figures, `eligible` (1 when every floor is
    cleared) and the score, the judge's hit rate, which decides among eligible checkpoints."""

    floors = floors or RealismFloors()

    def score(G) -> dict[str, float]:
        figures = meter(G)
        return {**figures, "eligible": float(not floors.failures(figures)),
                "score": figures["judge_hit_rate"]}

    return score


def quality_report(G, image_size: int, judge: Judge, target: str, sources: FaceTensors,
                   real_train: FaceTensors, real_test: FaceTensors, judge_metrics: dict,
                   floors: RealismFloors | None = None) -> dict:
    """The report's figures for the trained generator (the gate's figures are added by the
    synthesis run): the realism figures against real test faces of the target class, the
    floors they miss (`eligible` when none), and the judge's view per target class."""
    floors = floors or RealismFloors()
    realism = RealismMeter(sources, real_test, judge, target, image_size)(G)
    failures = floors.failures(realism)
    k = judge.classes.index(target)
    results = {name: translated(G, sources, j, judge, image_size)
               for j, name in enumerate(sources.classes)}
    rates = {name: r.scores() for name, r in results.items() if len(r.source)}
    rates.setdefault(target, {"hit_rate": math.nan, "ssim_to_source": math.nan, "faces": 0})
    test_target = real_test.images[real_test.labels == k]
    train_target = real_train.images[real_train.labels == k]
    feats = {name: judge.features(x) for name, x in (
        ("synthetic", results[target].fake), ("real_test", test_target),
        ("real_train", train_target), ("sources", results[target].source))}
    return {
        "target": target,
        "eligible": not failures,
        "floor_failures": failures,
        "floors": asdict(floors),
        "realism": realism,
        "judge_hit_rate": rates[target]["hit_rate"],
        "judge_real_recall": judge_metrics["per_class"][target]["recall"],
        "judge_test_accuracy": judge_metrics["accuracy"],
        "ssim_to_source": rates[target]["ssim_to_source"],
        "frechet_judge_features": {
            "synthetic_vs_real_test": frechet_distance(feats["synthetic"], feats["real_test"]),
            "real_train_vs_real_test (floor)": frechet_distance(feats["real_train"],
                                                                feats["real_test"]),
            "sources_vs_real_test (ceiling)": frechet_distance(feats["sources"],
                                                               feats["real_test"]),
        },
        "by_target_class": rates,
        "source_faces_per_class": int(sources.counts().max()) if len(sources) else 0,
        "real_test_faces": int(len(test_target)),
    }


def hit_rate_plot_png(history: list[dict], target: str) -> bytes:
    """The judge's hit rate and SSIM at each checkpoint against training minutes."""
    points = [h for h in history if "judge_hit_rate" in h]
    fig, ax = pyplot().subplots(figsize=(6, 3.2), dpi=100)
    minutes = [h["seconds"] / 60 for h in points]
    ax.plot(minutes, [h["judge_hit_rate"] for h in points], "o-",
            label=f"judge hit rate ({target})")
    ax.plot(minutes, [h["ssim_to_source"] for h in points], "s--", label="SSIM to source")
    ax.set_xlabel("training minutes")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)
