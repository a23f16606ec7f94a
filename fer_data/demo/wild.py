"""Demo copies of the in-the-wild datasets that come with their own face boxes or aligned crops:
RAF-DB, ExpW and AffectNet, each in its original layout (see the readers for the layouts)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from fer_data.demo.draw import Identity, draw_face, face_geometry, random_pose
from fer_data.labels import AFFECTNET_CODES, EXPW_CODES, RAFDB_CODES

RAFDB_COUNTS = {"surprise": 4, "fear": 3, "disgust": 4, "happy": 8, "sad": 5, "angry": 4,
                "neutral": 6}
# AffectNet rows per code: 7 contempt and 8-10 (none, uncertain, no-face) are in the real
# lists too, and become an excluded class and rejects
AFFECTNET_COUNTS = {0: 7, 1: 8, 2: 5, 3: 4, 4: 4, 5: 3, 6: 5, 7: 2, 8: 1, 9: 1, 10: 1}
# (valence, arousal) centres per class, after the AffectNet paper's circumplex
AFFECT = {"neutral": (0.0, 0.0), "happy": (0.7, 0.3), "sad": (-0.6, -0.3),
          "surprise": (0.2, 0.7), "fear": (-0.5, 0.7), "disgust": (-0.6, 0.3),
          "angry": (-0.5, 0.6), "contempt": (-0.4, 0.2)}


def _person(people: list[Identity], rng: np.random.Generator) -> Identity:
    """Someone from the crowd, photographed in the wild: a background of their own and hair
    that varies, so that two pictures of one person are not near-duplicates."""
    person = people[int(rng.integers(len(people)))]
    shade = int(rng.integers(40, 250))
    return replace(person, background=(shade, shade, shade),
                   hair_volume=float(rng.uniform(0.0, 0.1)))


def _pose(rng: np.random.Generator):
    """In-the-wild variety: head pose, framing and strong side light (eyes kept level: the
    demo's given boxes and landmarks are those of an upright face)."""
    pose = random_pose(rng, amount=1.8)
    return replace(pose, roll_deg=0.0, light_strength=float(rng.uniform(0.1, 0.45)))


def rafdb(folder: Path, people: list[Identity], rng: np.random.Generator) -> int:
    """basic/: the label list, 100x100 aligned faces, photographs with box and manual
    landmark files; compound/: two rows of the compound set (rejected by the reader)."""
    codes = {label: code for code, label in RAFDB_CODES.items()}
    basic = folder / "basic"
    lines, numbers = [], {"train": 0, "test": 0}
    items = [(label, str(rng.choice(["train", "test"], p=[0.8, 0.2])))
             for label, n in RAFDB_COUNTS.items() for _ in range(n)]
    for index in rng.permutation(len(items)):
        label, split = items[int(index)]
        numbers[split] += 1
        name = f"{split}_{numbers[split]:05d}" if split == "train" else \
            f"{split}_{numbers[split]:04d}"
        _rafdb_image(basic, name, label, _person(people, rng), rng)
        lines.append(f"{name}.jpg {codes[label]}")
    _write(basic / "EmoLabel" / "list_patition_label.txt", lines)
    compound = folder / "compound"
    compound_lines = []
    for number, code in enumerate((2, 10), start=1):  # happily / angrily disgusted
        _rafdb_image(compound, f"test_{number:04d}", "disgust", _person(people, rng), rng)
        compound_lines.append(f"test_{number:04d}.jpg {code}")
    _write(compound / "EmoLabel" / "list_patition_label.txt", compound_lines)
    return 2 * (len(lines) + 2)


def _rafdb_image(set_root: Path, name: str, label: str, person: Identity,
                 rng: np.random.Generator) -> None:
    pose = _pose(rng)
    aligned = draw_face(person, label, replace(pose, dx=0.0, dy=0.0, scale=1.4),
                        size=(100, 100), rng=rng)
    _save(set_root / "Image" / "aligned" / f"{name}_aligned.jpg", aligned)
    size = (int(rng.integers(150, 220)), int(rng.integers(170, 240)))
    photo = draw_face(person, label, pose, size=size, rng=rng)
    _save(set_root / "Image" / "original" / f"{name}.jpg", photo)
    geometry = face_geometry(person, pose, size)
    _write(set_root / "Annotation" / "boundingbox" / f"{name}_boundingbox.txt",
           [" ".join(f"{v:.2f}" for v in geometry["box"])])
    (lx, ly), (rx, ry) = geometry["eyes"]
    x1, y1, x2, y2 = geometry["box"]
    points = [(lx, ly), (rx, ry), ((x1 + x2) / 2, (y1 + y2) / 2),
              (lx, y2 - (y2 - y1) * 0.2), (rx, y2 - (y2 - y1) * 0.2)]
    attributes = [str(int(rng.integers(0, 3))), str(int(rng.integers(0, 3))),
                  str(int(rng.integers(0, 5)))]
    _write(set_root / "Annotation" / "manual" / f"{name}_manu_attri.txt",
           [f"{x:.2f}\t{y:.2f}" for x, y in points] + attributes)


def expw(folder: Path, people: list[Identity], rng: np.random.Generator) -> int:
    """data/image/origin/*.jpg group photographs (1-3 faces each) + data/label/label.lst,
    one line per face: image_name face_id top left right bottom confidence label."""
    lines, photos = [], 16
    for p in range(photos):
        canvas = np.full((260, 420, 3), int(rng.integers(60, 200)), np.uint8)
        name = f"{['happy', 'angry', 'sad', 'crowd'][p % 4]}_photo_{p + 1:03d}.jpg"
        for face_id in range(int(rng.integers(1, 4))):
            side = int(rng.integers(100, 130))
            x0, y0 = 20 + face_id * 135, int(rng.integers(10, 260 - side - 10))
            code = int(rng.integers(len(EXPW_CODES)))
            person, pose = _person(people, rng), _pose(rng)
            canvas[y0:y0 + side, x0:x0 + side] = draw_face(person, EXPW_CODES[code], pose,
                                                           size=(side, side), rng=rng)
            x1, y1, x2, y2 = face_geometry(person, pose, (side, side))["box"]
            lines.append(f"{name} {face_id} {y0 + y1:.0f} {x0 + x1:.0f} {x0 + x2:.0f} "
                         f"{y0 + y2:.0f} {rng.uniform(30, 99):.2f} {code}")
        _save(folder / "data" / "image" / "origin" / name, canvas)
    _write(folder / "data" / "label" / "label.lst", lines)
    return photos


def affectnet(folder: Path, people: list[Identity], rng: np.random.Generator) -> int:
    """Manually_Annotated_Images/<dir>/<hex>.jpg + Manually_Annotated_file_lists/
    training.csv and validation.csv with boxes, 68 landmarks, expression, valence, arousal."""
    rows = {"training.csv": [], "validation.csv": []}
    codes = [code for code, n in AFFECTNET_COUNTS.items() for _ in range(n)]
    for index in rng.permutation(len(codes)):
        code = codes[int(index)]
        label = AFFECTNET_CODES.get(code, "neutral")
        size = (int(rng.integers(160, 240)),) * 2
        person, pose = _person(people, rng), _pose(rng)
        rel = f"{int(rng.integers(1, 1000))}/{rng.bytes(20).hex()}.jpg"
        _save(folder / "Manually_Annotated_Images" / rel, draw_face(person, label, pose,
                                                                      size=size, rng=rng))
        x1, y1, x2, y2 = face_geometry(person, pose, size)["box"]
        valence, arousal = (np.clip(np.add(AFFECT[label], rng.normal(0, 0.15, 2)), -1, 1)
                            if code in AFFECTNET_CODES else (-2.0, -2.0))
        marks = ";".join(f"{v:.2f}" for v in _landmarks68(person, pose, size).ravel())
        listing = "validation.csv" if rng.random() < 0.2 else "training.csv"
        rows[listing].append(f'{rel},{x1:.0f},{y1:.0f},{x2 - x1:.0f},{y2 - y1:.0f},'
                             f'{marks},{code},{valence:.4f},{arousal:.4f}')
    header = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
              "expression,valence,arousal")
    for name, lines in rows.items():
        _write(folder / "Manually_Annotated_file_lists" / name, [header, *lines])
    return len(codes)


def _landmarks68(person: Identity, pose, size) -> np.ndarray:
    """68 iBUG-ordered points: the jaw and brows on the face oval, 36-41 and 42-47 around
    the eyes (what the reader uses), the rest on the lower face."""
    geometry = face_geometry(person, pose, size)
    x1, y1, x2, y2 = geometry["box"]
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    angles = np.linspace(np.pi * 0.05, np.pi * 0.95, 36)
    points = np.stack([cx - rx * np.cos(angles), cy + ry * np.sin(angles) * 0.9], 1)
    eye_ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 6, endpoint=False)),
                         np.sin(np.linspace(0, 2 * np.pi, 6, endpoint=False)) * 0.5], 1)
    eyes = [np.array(e) + eye_ring * rx * 0.15 for e in geometry["eyes"]]
    mouth = np.stack([cx + rx * 0.4 * np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
                      cy + ry * 0.5 + ry * 0.1 * np.sin(np.linspace(0, 2 * np.pi, 20,
                                                                      endpoint=False))], 1)
    return np.concatenate([points, *eyes, mouth])


def _save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=92)


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
