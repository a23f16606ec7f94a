"""Face detectors: MTCNN (facenet-pytorch, weights in its wheel) and OpenCV's Haar cascades,
behind one `Detector` interface; and the two face checks built on them (a face found in a
face crop, both eyes found)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, Sequence

import cv2
import numpy as np


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
        return [self._one(gray_image(im)) for im in images]

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


def gray_image(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
