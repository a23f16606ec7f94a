"""Face detection speed and agreement on real images, each change against what it replaced:

1. MTCNN as the pipeline runs it (fer_data.mtcnn: channels_last networks, area resizes from a
   summed-area table, the pyramid coarse to fine) against facenet-pytorch's own MTCNN.detect, on
   the real photos and video frames of ../shared/datasets brought to CK+ (640x490) and KDEF
   (562x762) sizes, framed two ways: wide shots (the whole still, centre crop to the aspect; its
   faces are small) and posed framings (a window around the face, which spans 40% of the shorter
   side as in CK+ and KDEF): seconds per image and whether each picks the same face (IoU >= 0.9).
2. The Haar quality flag on already-cropped faces: the old one (eye cascade, faces from 20 px on
   2x-upscaled padded copies) against the cheap one (no eyes, faces of at least a third of the
   image), on real FER2013 faces, which are faces by construction: time, flag rate, agreement.
3. MTCNN batched against one image at a time (equal-size images).

    .venv/bin/python bench/faces.py [--shared ../shared/datasets] [--fer 3000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fer_data.detectors import Face, HaarDetector, MtcnnDetector, _pad
from fer_data.faces import choose_face
from fer_data.frames import FrameOptions, decode_frames

REPO = Path(__file__).resolve().parents[1]
SIZES = {"CK+ 640x490": (640, 490), "KDEF 562x762": (562, 762)}
PORTRAIT_FACE_SHARE = 0.4  # of the shorter side: CK+ and KDEF faces are about 200-300 px


def real_stills(shared: Path) -> list[Image.Image]:
    photos = [Image.open(p).convert("RGB") for p in sorted((shared / "photos").glob("*.jpg"))]
    video = decode_frames(shared / "video" / "faces.mp4", FrameOptions(fps=25, max_height=1080))
    return photos + [Image.fromarray(f).convert("RGB") for f in video]


def fit(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Centre crop to the target aspect, then resize: faces keep their shape."""
    w, h = image.size
    tw, th = size
    scale = min(w / tw, h / th)
    cw, ch = tw * scale, th * scale
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR, box=box))


def portrait(image: Image.Image, face: Face, size: tuple[int, int],
             share: float = PORTRAIT_FACE_SHARE) -> np.ndarray:
    """A posed-dataset framing of a real still: a window of the target aspect around the face,
    whose shorter side the face spans `share` of (as in CK+ and KDEF), resized to `size`."""
    w, h = image.size
    tw, th = size
    x1, y1, x2, y2 = face.box
    short = min(max(x2 - x1, y2 - y1) / share, w * min(tw, th) / tw, h * min(tw, th) / th)
    cw, ch = short * tw / min(tw, th), short * th / min(tw, th)
    cx = min(max((x1 + x2) / 2, cw / 2), w - cw / 2)
    cy = min(max((y1 + y2) / 2, ch / 2), h - ch / 2)
    box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR, box=box))


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def agreement(a: list, b: list, confident: float) -> tuple[int, int]:
    """Images where both pick the same face (IoU >= 0.9) or both find none."""
    same = 0
    for fa, fb in zip(a, b, strict=True):
        ca, cb = choose_face(fa, confident), choose_face(fb, confident)
        same += (ca is None and cb is None) or (ca is not None and cb is not None
                                                and iou(ca.box, cb.box) >= 0.9)
    return same, len(a)


class FacenetMtcnn:
    """facenet-pytorch's MTCNN.detect as it ships (the baseline), one image at a time."""

    confident_score = MtcnnDetector.confident_score

    def __init__(self):
        from facenet_pytorch import MTCNN

        self.model = MTCNN(keep_all=True)

    def detect(self, images):
        out = []
        for image in images:
            boxes, probs, points = self.model.detect(image[None], landmarks=True)
            out.append([] if boxes[0] is None else [
                Face(tuple(map(float, b)), float(p), np.asarray(m))
                for b, p, m in zip(boxes[0], probs[0], points[0], strict=True)])
        return out


VARIANTS = {"fer_data.mtcnn, whole pyramid": {"large_face_fraction": 0.0},
            "+ coarse to fine, large face = 20% (default)": {"large_face_fraction": 0.2},
            "+ coarse to fine, large face = 30%": {"large_face_fraction": 0.3}}


def mtcnn_table(stills: list[Image.Image]) -> None:
    base_detector = FacenetMtcnn()
    fast = {name: MtcnnDetector(batch_size=1, **kwargs) for name, kwargs in VARIANTS.items()}
    for detector in (base_detector, *fast.values()):
        detector.detect([fit(stills[0], (160, 160))])  # load the weights before timing
    print(f"MTCNN on {len(stills)} real photos and video frames, one at a time, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; same face = IoU >= 0.9 with "
          "facenet-pytorch's")
    print("| size | variant | facenet-pytorch s/image | variant s/image | speed-up | same face |")
    print("|---|---|---:|---:|---:|---:|")
    # wide shots: the whole photo or frame (faces a median 7% of the shorter side); posed
    # framings: a window around the face facenet-pytorch chooses in the full-size still
    chosen = [choose_face(f, MtcnnDetector.confident_score)
              for f in base_detector.detect([np.asarray(im) for im in stills])]
    posed = [(im, face) for im, face in zip(stills, chosen, strict=True) if face is not None]
    framings = {}
    for name, size in SIZES.items():
        framings[f"{name}, wide shots"] = [fit(im, size) for im in stills]
        framings[f"{name}, posed framing"] = [portrait(im, face, size) for im, face in posed]
    for name, images in framings.items():
        base, t_base = timed(lambda images=images: base_detector.detect(images))
        for variant, detector in fast.items():
            new, t_fast = timed(lambda images=images, d=detector: d.detect(images))
            same, n = agreement(base, new, MtcnnDetector.confident_score)
            print(f"| {name} | {variant} | {t_base / n:.3f} | {t_fast / n:.3f} | "
                  f"{t_base / t_fast:.1f}x | {same}/{n} ({same / n:.1%}) |", flush=True)
    images = [fit(im, (640, 480)) for im in stills[::4]]
    ours = MtcnnDetector(batch_size=16)
    _, t_single = timed(lambda: [ours.detect([im]) for im in images])
    _, t_batch = timed(lambda: ours.detect(images))
    print(f"fer_data.mtcnn on {len(images)} frames of 640x480: batched (16) {t_batch:.2f} s, "
          f"one by one {t_single:.2f} s ({t_single / t_batch:.2f}x)")


def quality_table(shared: Path, count: int) -> None:
    files = sorted((shared / "fer2013_images").rglob("*.jpg"))
    pick = np.random.default_rng(0).choice(len(files), min(count, len(files)), replace=False)
    faces = [_pad(np.asarray(Image.open(files[i]).convert("L"))) for i in sorted(pick)]
    old = HaarDetector()
    cheap = HaarDetector(min_size_fraction=1 / 3, find_eyes=False)
    old.detect(faces[:1])
    cheap.detect(faces[:1])
    flags_old, t_old = timed(lambda: np.array([bool(f) for f in old.detect(faces)]))
    flags_new, t_new = timed(lambda: np.array([bool(f) for f in cheap.detect(faces)]))
    print(f"Haar quality flag on {len(faces):,} real FER2013 faces (faces by construction):")
    print("| flag | ms/face | flagged as face | disagrees with 'is a face' |")
    print("|---|---:|---:|---:|")
    for name, flags, t in (("old: eye cascade, 20 px", flags_old, t_old),
                           ("cheap: no eyes, >= 1/3 of the image", flags_new, t_new)):
        print(f"| {name} | {1000 * t / len(faces):.2f} | {flags.mean():.1%} | "
              f"{1 - flags.mean():.1%} |")
    print(f"cheap vs old: same flag on {(flags_old == flags_new).mean():.2%}, "
          f"{t_old / t_new:.1f}x faster; default now: off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--fer", type=int, default=3000, help="FER2013 faces for the flag")
    args = parser.parse_args()
    mtcnn_table(real_stills(args.shared))
    quality_table(args.shared, args.fer)


if __name__ == "__main__":
    main()
