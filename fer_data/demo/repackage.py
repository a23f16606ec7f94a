"""A Kaggle-style folder set built from real FER2013 and CK+48 exports, the way such sets are
made in the wild: FER2013 pictures re-encoded as JPEGs at another quality, some with their
contrast changed globally (flattened like a raw export of an equalized one, or a gamma), a few
mirrored, reshuffled into the set's own train/validation split with renamed class folders, a
few pictures filed in both halves, and some CK+48 PNGs copied in unchanged.

Every copy is listed in a manifest beside the folder set (never inside it), so a test or bench
can check that de-duplication finds each one. Deterministic from a seed.

    python -m fer_data.demo.repackage --fer ../shared/datasets/fer2013_images \
        --ckplus ../shared/datasets/ckplus48 --out /tmp/kaggle [--fer-count 3000]
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fer_data.labels import canonical

# How the repackage names its class folders (all are synonyms the folder reader knows).
RENAMED = {"angry": "anger", "disgust": "disgusted", "fear": "fearful", "happy": "happiness",
           "sad": "sadness", "surprise": "surprised", "neutral": "normal"}
MANIFEST = "planted.csv"
FOLDER = "face_expression"


@dataclass(frozen=True)
class RepackageSpec:
    fer_count: int = 0  # FER2013 pictures to repackage (0 = all)
    ckplus_count: int = 120  # CK+48 PNGs copied in byte for byte
    both_halves: float = 0.05  # share of FER2013 pictures filed in train and validation
    validation: float = 0.2  # the set's own validation share
    # share of copies given a local contrast change (CLAHE) instead: a harder case than the
    # global changes exports apply, which moves pHashes further (off by default)
    local_contrast: float = 0.0
    # share of copies given a stock-photo watermark (semi-transparent text across the face),
    # as FER2013's own cross-split repeats carry: the faces agree, the overlay does not
    watermark: float = 0.0
    seed: int = 0


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


WATERMARKS = ("shutterstock", "depositphotos", "123RF", "dreamstime", "iStock")


def watermark(pixels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A stock site's name written across the face in semi-transparent white (or dark), level
    or slanted, at a random height."""
    text = str(rng.choice(WATERMARKS))
    side = pixels.shape[1]
    scale = side / 48 * rng.uniform(0.3, 0.45)
    thickness = int(rng.integers(1, 3))
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    mask = np.zeros(pixels.shape, np.uint8)
    x0 = int(rng.integers(min(0, side - w), max(1, side - w) + 1))
    y0 = int(rng.integers(h + 1, pixels.shape[0] - 1))
    cv2.putText(mask, text, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness,
                cv2.LINE_AA)
    angle = float(rng.choice([0.0, rng.uniform(-35, 35)]))
    if angle:
        turn = cv2.getRotationMatrix2D((side / 2, pixels.shape[0] / 2), angle, 1.0)
        mask = cv2.warpAffine(mask, turn, (side, pixels.shape[0]))
    alpha = rng.uniform(0.3, 0.6) * mask / 255.0
    ink = 255.0 if rng.random() < 0.8 else 0.0
    out = (1 - alpha) * pixels + alpha * ink
    return out, f"watermark {text} {angle:.0f} deg alpha {alpha.max():.2f}"


def process(pixels: np.ndarray, rng: np.random.Generator, local_contrast: float = 0.0,
            watermarked: float = 0.0) -> tuple[np.ndarray, str]:
    """One export's processing of a gray face: a global contrast change or none, sometimes a
    mirror, or (with probability `local_contrast`) CLAHE, or (with probability `watermarked`)
    a stock-photo watermark. Returns the new pixels and a short description."""
    draw = rng.random()
    kind = "clahe" if draw < local_contrast else "watermark" \
        if draw < local_contrast + watermarked else \
        rng.choice(["none", "flatten", "gamma", "mirror"], p=[.35, .35, .18, .12])
    x = pixels.astype(np.float64)
    if kind == "flatten":  # what an un-equalized export looks like: less contrast
        a = rng.uniform(0.55, 0.85)
        x = a * (x - x.mean()) + x.mean() + rng.uniform(-15, 15)
        desc = f"contrast x{a:.2f}"
    elif kind == "gamma":
        g = rng.uniform(0.7, 1.4)
        x = 255.0 * (x / 255.0) ** g
        desc = f"gamma {g:.2f}"
    elif kind == "clahe":
        x = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(pixels).astype(np.float64)
        desc = "clahe"
    elif kind == "watermark":
        x, desc = watermark(pixels, rng)
    elif kind == "mirror":
        x = x[:, ::-1]
        desc = "mirror"
    else:
        desc = "re-encoded"
    return np.clip(np.round(x), 0, 255).astype(np.uint8), desc


def repackage(fer_root: Path, ckplus_root: Path, out: Path,
              spec: RepackageSpec = RepackageSpec()) -> Path:
    """Write out/face_expression/images/{train,validation}/<class>/*.jpg|png and
    out/planted.csv (copy, origin_dataset, origin_path, processing); returns the manifest."""
    rng = np.random.default_rng(spec.seed)
    target = out / FOLDER
    if target.exists():
        shutil.rmtree(target)
    fer = sorted(p for p in Path(fer_root).rglob("*.jpg"))
    if spec.fer_count:
        fer = [fer[i] for i in sorted(rng.choice(len(fer), spec.fer_count, replace=False))]
    rows = []
    counter = 0
    for path in fer:
        label = canonical(path.parent.name)
        pixels = np.asarray(Image.open(path).convert("L"))
        halves = ["train", "validation"] if rng.random() < spec.both_halves else \
            ["validation" if rng.random() < spec.validation else "train"]
        for half in halves:
            counter += 1
            copy, desc = process(pixels, rng, spec.local_contrast, spec.watermark)
            quality = int(rng.integers(60, 96))
            rel = Path("images", half, RENAMED[label], f"{counter:05d}.jpg")
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_bytes(_jpeg(copy, quality))
            rows.append((rel.as_posix(), "fer2013", path.relative_to(fer_root).as_posix(),
                         f"{desc}, JPEG q{quality}"))
    ck = sorted(p for p in Path(ckplus_root).rglob("*.png")
                if canonical(p.parent.name) in RENAMED)
    if spec.ckplus_count:
        ck = [ck[i] for i in sorted(rng.choice(len(ck), min(spec.ckplus_count, len(ck)),
                                               replace=False))]
    for path in ck:
        half = "validation" if rng.random() < spec.validation else "train"
        rel = Path("images", half, RENAMED[canonical(path.parent.name)], path.name)
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / rel)
        rows.append((rel.as_posix(), "ckplus", path.relative_to(ckplus_root).as_posix(),
                     "byte-identical copy"))
    manifest = out / MANIFEST
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["copy", "origin_dataset", "origin_path", "processing"])
        writer.writerows(rows)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fer", type=Path, required=True, help="FER2013 image export folder")
    parser.add_argument("--ckplus", type=Path, required=True, help="CK+48 folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fer-count", type=int, default=0, help="0 = every FER2013 picture")
    parser.add_argument("--ckplus-count", type=int, default=RepackageSpec.ckplus_count)
    parser.add_argument("--local-contrast", type=float, default=0.0,
                        help="share of copies given CLAHE (a hard case) instead")
    parser.add_argument("--watermark", type=float, default=0.0,
                        help="share of copies given a stock-photo watermark instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = repackage(args.fer, args.ckplus, args.out,
                         RepackageSpec(args.fer_count, args.ckplus_count,
                                       local_contrast=args.local_contrast,
                                       watermark=args.watermark, seed=args.seed))
    print(f"wrote {args.out / FOLDER} and {manifest}")


if __name__ == "__main__":
    main()
