"""Face detection speed: MTCNN batched vs one image at a time, and the Haar cascade, on the same
640x480 frames (the real photos and frames of the real video, resized).

    python bench/faces.py [--shared ../shared/datasets] [--batch 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_data.faces import HaarDetector, MtcnnDetector  # noqa: E402
from fer_data.frames import FrameOptions, decode_frames  # noqa: E402


def frames_640x480(shared: Path) -> list[np.ndarray]:
    photos = [Image.open(p).convert("RGB") for p in sorted((shared / "photos").glob("*.jpg"))]
    video = decode_frames(shared / "video" / "faces.mp4", FrameOptions(fps=6, max_height=1080))
    stills = [Image.fromarray(f).convert("RGB") for f in video]
    return [np.asarray(im.resize((640, 480), Image.Resampling.BILINEAR)) for im in photos + stills]


def timed(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    images = frames_640x480(args.shared)
    batched = MtcnnDetector(batch_size=args.batch)
    haar = HaarDetector()
    batched.detect(images[:2])  # load weights before timing
    n = len(images)
    t_single = timed(lambda: [batched.detect([im]) for im in images])
    t_batch = timed(lambda: batched.detect(images))
    t_haar = timed(lambda: haar.detect(images))
    found_b = sum(bool(f) for f in batched.detect(images))
    found_h = sum(bool(f) for f in haar.detect(images))
    print(f"{n} frames of 640x480, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'':28}{'seconds':>9}{'images/s':>10}{'with face':>11}")
    print(f"{'MTCNN one by one':28}{t_single:>9.2f}{n / t_single:>10.1f}{found_b:>11}")
    print(f"{f'MTCNN batched ({args.batch})':28}{t_batch:>9.2f}{n / t_batch:>10.1f}{found_b:>11}")
    print(f"{'Haar cascade':28}{t_haar:>9.2f}{n / t_haar:>10.1f}{found_h:>11}")
    print(f"batched / one-by-one: {t_single / t_batch:.2f}x")


if __name__ == "__main__":
    main()
