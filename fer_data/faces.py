"""Faces stage: find the face in each image (MTCNN, a Haar cascade, or none for datasets that
are already face crops), level the eyes, crop with a margin, and return gray crops of a fixed
size with their box, landmarks, score and pHash."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Protocol, Sequence

import cv2
import numpy as np
import pyarrow as pa

from fer_data import schema
from fer_data.dedup import crop_keys, source_keys
from fer_data.images import decode_png, encode_png
from fer_data.phash import to_gray


@dataclass
class Face:
    """One detection in source-image pixels. `landmarks` is (5, 2): left eye, right eye, nose,
    left and right mouth corner (MTCNN); Haar gives the eyes only when an eye cascade finds
    both, else None."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


class Detector(Protocol):
    name: str
    confident_score: float

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in each RGB uint8 image, in input order."""
        ...


@dataclass
class MtcnnDetector:
    """facenet-pytorch's MTCNN (weights ship inside the wheel), run by fer_data.mtcnn: the same
    boxes in about two thirds of the time on CPU. Images of equal size can be stacked into
    batches of `batch_size` (they pay on a GPU).

    `large_face_fraction` > 0 runs the image pyramid coarse to fine: an image whose chosen
    face (confident, largest) spans at least that share of its shorter side is settled by the
    levels for faces of half that size and up, and skips the finer levels, most of PNet's work,
    which only look for smaller faces; other images get the whole pyramid. The chosen face is
    the one the whole pyramid chooses (bench/faces.py measures how often); `n_faces` then
    counts the faces of the sizes searched. 0: always the whole pyramid (facenet-pytorch's
    boxes, every face)."""

    device: str = "cpu"
    batch_size: int = 1  # on CPU one at a time measured faster; batches pay on a GPU
    min_face_size: int = 20
    large_face_fraction: float = 0.2
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    confident_score: float = 0.95
    name: str = "mtcnn"

    @cached_property
    def model(self):
        import torch
        from facenet_pytorch import MTCNN

        from fer_data.mtcnn import speed_up

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = MTCNN(keep_all=True, device=torch.device(device),
                      min_face_size=self.min_face_size, thresholds=list(self.thresholds))
        speed_up(model)
        return model

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        from fer_data.mtcnn import detect_face

        results: list[list[Face]] = [[] for _ in images]
        for indices in _same_size_groups(images):
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                batch = np.stack([_rgb(images[i]) for i in chunk])
                for i, (boxes, points) in zip(chunk, detect_face(
                        batch, self.model, large_face_fraction=self.large_face_fraction,
                        confident_score=self.confident_score), strict=True):
                    results[i] = [Face(tuple(float(v) for v in box[:4]), float(box[4]), marks)
                                  for box, marks in zip(boxes, points, strict=True)]
        return results


@dataclass
class HaarDetector:
    """OpenCV's frontal-face Haar cascade; the score is the cascade's level weight (higher is
    more confident, not a probability). Eyes from the eye cascade give alignment landmarks."""

    scale_factor: float = 1.1
    min_neighbors: int = 4
    min_size: int = 20
    # faces smaller than this share of the image's shorter side are not looked for (0: only
    # min_size); a quality check on a face crop knows the face fills the image
    min_size_fraction: float = 0.0
    confident_score: float = 5.0  # level weight; real faces score 5-13, stray hits 0.5-4
    find_eyes: bool = True
    name: str = "haar"

    @cached_property
    def cascades(self) -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier]:
        face = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        eyes = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
        if face.empty() or eyes.empty():
            raise RuntimeError("OpenCV Haar cascades missing: install opencv-python-headless<5")
        return face, eyes

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        return [self._one(_gray(im)) for im in images]

    def _one(self, gray: np.ndarray) -> list[Face]:
        face_cascade, _ = self.cascades
        short = min(gray.shape[:2])
        min_size = max(min(self.min_size, short // 2), int(self.min_size_fraction * short))
        rects, _, weights = face_cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_size, min_size), outputRejectLevels=True)
        faces = []
        for (x, y, w, h), weight in zip(rects, np.ravel(weights), strict=True):
            eyes = self._eyes(gray, x, y, w, h) if self.find_eyes else None
            faces.append(Face((float(x), float(y), float(x + w), float(y + h)), float(weight),
                              eyes))
        return faces

    def _eyes(self, gray: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray | None:
        _, eye_cascade = self.cascades
        top = gray[y:y + int(h * 0.55), x:x + w]
        found = eye_cascade.detectMultiScale(top, 1.1, 3, minSize=(max(w // 10, 4),) * 2)
        if len(found) < 2:
            return None
        two = sorted(found, key=lambda r: -r[2] * r[3])[:2]
        centres = sorted((x + ex + ew / 2, y + ey + eh / 2) for ex, ey, ew, eh in two)
        (lx, ly), (rx, ry) = centres
        if rx - lx < w * 0.2:  # both hits on one eye
            return None
        return np.array([[lx, ly], [rx, ry]], dtype=np.float32)


@dataclass(frozen=True)
class CropOptions:
    face_size: int = 48
    margin: float = 0.15  # added on each side, as a fraction of the box size
    # images no larger than this on either side are already face crops (FER2013, CK+48, the
    # 48x48 folder sets): they pass through unchanged instead of going to a detector
    precropped_max_side: int = 96


@dataclass
class Crop:
    face: np.ndarray  # gray uint8 (face_size, face_size)
    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None
    score: float
    n_faces: int
    detector: str


def choose_face(faces: list[Face], confident_score: float) -> Face | None:
    """The largest of the confident faces (eye landmarks found and score at least
    `confident_score`); when none is confident, the most confident of all."""
    if not faces:
        return None
    confident = [f for f in faces if f.landmarks is not None and f.score >= confident_score]
    if confident:
        return max(confident, key=lambda f: (f.area, f.score))
    return max(faces, key=lambda f: (np.nan_to_num(f.score, nan=0.0), f.area))


def align_and_crop(image: np.ndarray, face: Face, options: CropOptions) -> np.ndarray:
    """Rotate about the eye centre so the eyes are level, cut a square around the face box
    (with margin; borders replicated), and resize to face_size in gray."""
    gray = _gray(image)
    x1, y1, x2, y2 = face.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + 2 * options.margin)
    angle, pivot = 0.0, (cx, cy)
    if face.landmarks is not None and len(face.landmarks) >= 2:
        (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
        pivot = ((lx + rx) / 2, (ly + ry) / 2)
    out = max(int(round(side)), 1)
    matrix = cv2.getRotationMatrix2D(pivot, angle, 1.0)
    centre = matrix @ np.array([cx, cy, 1.0])
    matrix[:, 2] += out / 2 - centre
    crop = cv2.warpAffine(gray, matrix, (out, out), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    size = options.face_size
    interpolation = cv2.INTER_AREA if out >= size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def passthrough(image: np.ndarray, face_size: int) -> Crop:
    """An already-cropped face as it is: gray, its centre square when it is not square, and
    resized only when its side differs from face_size. A 48x48 gray source comes back equal."""
    gray = to_gray(image)
    height, width = gray.shape
    side = min(height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    face = gray[y0:y0 + side, x0:x0 + side]
    if side != face_size:
        interpolation = cv2.INTER_AREA if side > face_size else cv2.INTER_CUBIC
        face = cv2.resize(face, (face_size, face_size), interpolation=interpolation)
    return Crop(np.ascontiguousarray(face), (float(x0), float(y0), float(x0 + side),
                                             float(y0 + side)), None, float("nan"), 1, "none")


def crop_faces(images: Sequence[np.ndarray], detectors: Sequence[Detector],
               options: CropOptions) -> list[Crop | None]:
    """Detect and crop one face per image, trying each detector in turn on the images the
    previous ones missed (the fallback chain). None where no detector found a face."""
    results: list[Crop | None] = [None] * len(images)
    pending = list(range(len(images)))
    for detector in detectors:
        if not pending:
            break
        found = detector.detect([images[i] for i in pending])
        still = []
        for i, faces in zip(pending, found, strict=True):
            face = choose_face(faces, detector.confident_score)
            if face is None:
                still.append(i)
                continue
            results[i] = Crop(align_and_crop(images[i], face, options), face.box, face.landmarks,
                              face.score, len(faces), detector.name)
        pending = still
    return results


def faces_found(detector: Detector, crops: Sequence[np.ndarray]) -> np.ndarray:
    """Whether `detector` finds a face in each face crop (given context and size by `_pad`):
    the `face_found` flag of pre-cropped faces, and the synthetic-face gate's face check."""
    return np.array([bool(faces) for faces in _detect_in_crops(detector, crops)], dtype=bool)


def eyes_found(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Whether OpenCV's cascades find a face and both of its eyes in each face crop: an
    independent look at the eye region, the part a damaged synthetic face loses first. Strict
    on real faces too (measured on 1,000 real FER2013 crops: 0.27), so it compares synthetic
    faces with their own sources rather than gating them."""
    found = _detect_in_crops(HaarDetector(min_size_fraction=1 / 3), crops)
    return np.array([any(f.landmarks is not None for f in faces) for faces in found], dtype=bool)


def _detect_in_crops(detector: Detector, crops: Sequence[np.ndarray]) -> list[list[Face]]:
    return detector.detect([_pad(c) for c in crops])


def _pad(image: np.ndarray, fraction: float = 0.25) -> np.ndarray:
    """Give a tight face crop what detectors expect: some context around the face (replicated
    border) and, below 96 pixels, twice the size."""
    if min(image.shape[:2]) < 96:
        image = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    p = max(int(round(min(image.shape[:2]) * fraction)), 1)
    return cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_REPLICATE)


def _same_size_groups(images: Sequence[np.ndarray]) -> list[list[int]]:
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, im in enumerate(images):
        groups[im.shape[:2]].append(i)
    return list(groups.values())


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


@dataclass
class FaceTableResult:
    faces: pa.Table
    rejects: pa.Table
    inputs: int

    @property
    def detection_rate(self) -> float:
        return self.faces.num_rows / self.inputs if self.inputs else float("nan")

    def mean_score(self) -> float:
        scores = [s for s in self.faces.column("det_score").to_pylist() if s is not None
                  and not math.isnan(s)]
        return float(np.mean(scores)) if scores else float("nan")


def build_face_table(batches: Iterable[pa.RecordBatch], detectors: Sequence[Detector],
                     options: CropOptions, quality: Detector | None = None) -> FaceTableResult:
    """Crop the face of every raw_images row, with the de-duplication keys of its source.
    Already-cropped images (all of them when `detectors` is empty, else those no larger than
    `options.precropped_max_side`) pass through unchanged, and `quality`, when given, only
    sets their `face_found` flag. Rows where no detector finds a face become `no_face`
    rejects."""
    rows, rejects, inputs = [], [], 0
    for batch in batches:
        records = batch.to_pylist()
        inputs += len(records)
        images = [decode_png(r["image"]) for r in records]
        crops: list[Crop | None] = [None] * len(images)
        flags: list[bool | None] = [None] * len(images)
        pre = [not detectors or max(im.shape[:2]) <= options.precropped_max_side
               for im in images]
        precropped = [i for i, p in enumerate(pre) if p]
        for i in precropped:
            crops[i] = passthrough(images[i], options.face_size)
        if quality is not None and precropped:
            found = faces_found(quality, [images[i] for i in precropped])
            for i, flag in zip(precropped, found, strict=True):
                flags[i] = bool(flag)
        detect = [i for i, p in enumerate(pre) if not p]
        for i, crop in zip(detect, crop_faces([images[i] for i in detect], detectors, options),
                           strict=True):
            crops[i], flags[i] = crop, crop is not None
        kept = [i for i, c in enumerate(crops) if c is not None]
        keys = {**crop_keys([crops[i].face for i in kept]),
                **source_keys([images[i] for i in kept])}
        for k, i in enumerate(kept):
            rows.append(_face_row(records[i], crops[i], flags[i],
                                  {name: values[k] for name, values in keys.items()}, options))
        tried = ", ".join(d.name for d in detectors)
        rejects += [{"dataset": r["dataset"], "source_path": r["source_path"], "stage": "faces",
                     "reason": "no_face", "detail": f"image_id {r['image_id']}: no face found "
                     f"by {tried} ({r['width']}x{r['height']})"}
                    for r, c in zip(records, crops, strict=True) if c is None]
    return FaceTableResult(pa.Table.from_pylist(rows, schema=schema.FACE),
                           pa.Table.from_pylist(rejects, schema=schema.REJECT), inputs)


def _face_row(record: dict, crop: Crop, flag: bool | None, keys: dict,
              options: CropOptions) -> dict:
    row = {k: v for k, v in record.items() if k != "image"}
    row.update(
        face=encode_png(crop.face),
        face_size=options.face_size,
        bbox=[float(v) for v in crop.box],
        landmarks=None if crop.landmarks is None else crop.landmarks.astype(float).ravel().tolist(),
        detector=crop.detector,
        det_score=None if math.isnan(crop.score) else crop.score,
        n_faces=crop.n_faces,
        face_found=flag,
        pixel_std=float(crop.face.std()),
        **{name: int(v) if isinstance(v, np.integer) else v for name, v in keys.items()},
    )
    return row
