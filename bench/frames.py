"""Frame extraction + de-duplication speed on the real 1080p clip, and batched pHash speed.

    python bench/frames.py [--shared ../shared/datasets]

1. fer-data: ffmpeg (through ffmpeg-python) samples 5 fps, scales to 360 px high and pipes gray
   frames; Haar finds the face; batched pHash; de-duplication. Baseline: OpenCV VideoCapture
   reads every frame, imagehash.phash per frame.
2. pHash of 10,000 real 48x48 FER2013 crops: fer_data.phash.phash_batch vs an imagehash.phash
   loop, checking the hashes are identical.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from fer_data.frames import FrameOptions, extract_frames  # noqa: E402
from fer_data.phash import phash_batch, to_hex  # noqa: E402


def baseline_video(path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    capture = cv2.VideoCapture(str(path))
    hashes = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        hashes.append(imagehash.phash(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))))
    capture.release()
    return len(hashes), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    args = parser.parse_args()
    video = args.shared / "video" / "faces.mp4"

    start = time.perf_counter()
    clip = extract_frames(video, FrameOptions())
    ours = time.perf_counter() - start
    n_base, base = baseline_video(video)
    print(f"video: {video.name}, 1920x1080 25 fps")
    print(f"{'':40}{'frames':>8}{'kept':>6}{'seconds':>9}{'video s/s':>10}")
    duration = n_base / 25
    print(f"{'fer-data (5 fps, face pHash, dedup)':40}{clip.sampled:>8}{len(clip.kept):>6}"
          f"{ours:>9.2f}{duration / ours:>10.1f}")
    print(f"{'OpenCV every frame + imagehash.phash':40}{n_base:>8}{n_base:>6}{base:>9.2f}"
          f"{duration / base:>10.1f}")
    print(f"speed-up per second of video: {base / ours:.1f}x")

    files = sorted((args.shared / "fer2013_images" / "train").rglob("*.jpg"))[:10000]
    crops = [np.asarray(Image.open(f)) for f in files]
    pil = [Image.fromarray(c) for c in crops]
    phash_batch(crops[:64])  # build the resize matrices once
    start = time.perf_counter()
    batch = phash_batch(crops)
    t_batch = time.perf_counter() - start
    start = time.perf_counter()
    loop = [str(imagehash.phash(im)) for im in pil]
    t_loop = time.perf_counter() - start
    same = all(to_hex(h) == s for h, s in zip(batch, loop, strict=True))
    print(f"\npHash of {len(crops):,} FER2013 crops: batched {t_batch:.2f} s "
          f"({len(crops) / t_batch:,.0f}/s), imagehash loop {t_loop:.2f} s "
          f"({len(crops) / t_loop:,.0f}/s): {t_loop / t_batch:.1f}x, identical: {same}")


if __name__ == "__main__":
    main()
