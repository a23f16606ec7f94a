"""Faces stage: find the face in each image (a detector from fer_data/detectors.py, the box the
dataset gives, or none for datasets that are already face crops), level the eyes, crop with a
margin, and return gray crops of a fixed size with their box, landmarks, score and pHash."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np
import pyarrow as pa

from fer_data import schema
from fer_data.dedup import crop_keys, source_keys
from fer_data.detectors import Detector, Face, faces_found, gray_image
from fer_data.images import decode_png, encode_png
from fer_data.phash import to_gray


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
    gray = gray_image(image)
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


def given_crop(image: np.ndarray, given: dict, options: CropOptions) -> Crop:
    """The face where the dataset says it is (a raw_images `given_face`): its box with
    options.margin on each side, eyes levelled where the dataset gives them. Coordinates come
    in the file's pixels and are moved into the stored image's (a cut-out region)."""
    if given["whole_image"]:
        return passthrough(image, options.face_size)
    dx, dy = given["offset"]
    x1, y1, x2, y2 = given["box"]
    eyes = given["eyes"]
    landmarks = None if eyes is None else np.array(eyes, np.float32).reshape(2, 2) - (dx, dy)
    score = float("nan") if given["score"] is None else float(given["score"])
    face = Face((x1 - dx, y1 - dy, x2 - dx, y2 - dy), score, landmarks)
    return Crop(align_and_crop(image, face, options), face.box, landmarks, score, 1, "given")


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


def _crops_or_errors(images: list[np.ndarray], detectors: Sequence[Detector],
                     options: CropOptions) -> list[Crop | None | Exception]:
    """crop_faces over a batch; when it raises, again image by image, so that an image a
    detector cannot handle becomes its own reject instead of failing the partition."""
    try:
        return crop_faces(images, detectors, options)
    except Exception:
        out: list[Crop | None | Exception] = []
        for image in images:
            try:
                out.append(crop_faces([image], detectors, options)[0])
            except Exception as exc:
                out.append(exc)
        return out


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
        given = {i: r["given_face"] for i, r in enumerate(records) if r.get("given_face")}
        for i, face in given.items():
            crops[i], flags[i] = given_crop(images[i], face, options), True
        pre = [i not in given and (not detectors or max(im.shape[:2]) <=
                                   options.precropped_max_side) for i, im in enumerate(images)]
        precropped = [i for i, p in enumerate(pre) if p]
        for i in precropped:
            crops[i] = passthrough(images[i], options.face_size)
        if quality is not None and precropped:
            found = faces_found(quality, [images[i] for i in precropped])
            for i, flag in zip(precropped, found, strict=True):
                flags[i] = bool(flag)
        detect = [i for i, p in enumerate(pre) if not p and i not in given]
        errors: dict[int, Exception] = {}
        for i, crop in zip(detect, _crops_or_errors([images[i] for i in detect], detectors,
                                                    options), strict=True):
            if isinstance(crop, Exception):
                errors[i], crop = crop, None
            crops[i], flags[i] = crop, crop is not None
        kept = [i for i, c in enumerate(crops) if c is not None]
        keys = {**crop_keys([crops[i].face for i in kept]),
                **source_keys([images[i] for i in kept])}
        for k, i in enumerate(kept):
            rows.append(_face_row(records[i], crops[i], flags[i],
                                  {name: values[k] for name, values in keys.items()}, options))
        tried = ", ".join(d.name for d in detectors)
        for i, (r, c) in enumerate(zip(records, crops, strict=True)):
            if c is None:
                reason, detail = ("face_error", f"{type(errors[i]).__name__}: {errors[i]}") \
                    if i in errors else ("no_face", f"no face found by {tried}")
                rejects.append({"dataset": r["dataset"], "source_path": r["source_path"],
                                "stage": "faces", "reason": reason,
                                "detail": f"image_id {r['image_id']}: {detail} "
                                f"({r['width']}x{r['height']})"})
    return FaceTableResult(pa.Table.from_pylist(rows, schema=schema.FACE),
                           pa.Table.from_pylist(rejects, schema=schema.REJECT), inputs)


def _face_row(record: dict, crop: Crop, flag: bool | None, keys: dict,
              options: CropOptions) -> dict:
    row = {k: v for k, v in record.items() if k not in ("image", "given_face")}
    # boxes and landmarks in the original file's pixels (the stored image may be a region)
    dx, dy = (record.get("given_face") or {}).get("offset") or (0, 0)
    row.update(
        face=encode_png(crop.face),
        face_size=options.face_size,
        bbox=[float(v) + d for v, d in zip(crop.box, (dx, dy, dx, dy), strict=True)],
        landmarks=None if crop.landmarks is None else
        (crop.landmarks.astype(float) + (dx, dy)).ravel().tolist(),
        detector=crop.detector,
        det_score=None if math.isnan(crop.score) else crop.score,
        n_faces=crop.n_faces,
        face_found=flag,
        **{name: v.item() if isinstance(v, np.generic) else v for name, v in keys.items()},
    )
    return row
