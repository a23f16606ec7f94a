"""Built-in demo data: a miniature of every supported dataset, in each one's original layout,
drawn procedurally (synthetic cartoon faces, NOT real people) so the pipeline runs end to end
with no download. Deterministic from a seed.

    python -m fer_data.datasets demo raw/
"""

from __future__ import annotations

import copy
import math
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from fer_data.demo import wild
from fer_data.demo.draw import (
    EXPRESSIONS,
    Identity,
    draw_face,
    random_identity,
    random_pose,
    to_gray,
)
from fer_data.frames import ffmpeg_binary
from fer_data.labels import FER7, JAFFE_CODES, KDEF_CODES, RAVDESS_CODES

# Per-class counts for the FER2013-like sets: disgust is rare on purpose, as in FER2013
# (547 of 35,887), so class balancing has work to do.
FER_COUNTS = {"angry": 36, "disgust": 5, "fear": 36, "happy": 54, "sad": 42, "surprise": 30,
              "neutral": 45}
FACE_EXPRESSION_NEW = {"angry": 14, "disgust": 3, "fear": 14, "happy": 20, "sad": 16,
                       "surprise": 12, "neutral": 18}
TIGHT_CROP = 1.55  # FER2013 crops are tight around the face
@dataclass(frozen=True)
class DemoSpec:
    seed: int = 0
    ckplus_subjects: int = 6
    kdef_subjects: int = 4
    jaffe_posers: int = 4
    ravdess_actors: int = 2
    video_size: tuple[int, int] = (424, 240)
    video_fps: int = 15
    video_seconds: float = 2.4
    datasets: tuple[str, ...] = ()  # () = every dataset with a writer


@dataclass(frozen=True)
class Cast:
    """Who poses for the demo datasets: people 0-15 for the lab datasets, the others (the
    crowd) for the in-the-wild sets, as no real person is in both FER2013 and, say, JAFFE;
    and each dataset's own random stream, so writing a subset gives the same files."""

    spec: DemoSpec
    people: list[Identity]
    streams: dict[str, np.random.Generator]

    @property
    def crowd(self) -> list[Identity]:
        return self.people[16:]


# writes one dataset's demo copy into its folder; returns the files written
DemoWriter = Callable[[Path, Cast, np.random.Generator], int]


def write_demo(raw_dir: str | Path, writers: Mapping[str, DemoWriter],
               spec: DemoSpec) -> dict[str, int]:
    """Write the demo datasets (spec.datasets, default all of `writers`, the registry's:
    fer_data.datasets.write_demo) under raw_dir/<dataset>/; files written per dataset."""
    raw_dir = Path(raw_dir)
    rng = np.random.default_rng(spec.seed)
    people = [random_identity(rng) for _ in range(48)]
    streams = dict(zip(writers, rng.spawn(len(writers)), strict=True))
    cast = Cast(spec, people, streams)
    unknown = set(spec.datasets) - set(writers)
    if unknown:
        raise KeyError(f"no demo writer for {sorted(unknown)}")
    counts = {name: writers[name](raw_dir / name, cast, copy.deepcopy(streams[name]))
              for name in spec.datasets or tuple(writers)}
    (raw_dir / "DEMO_DATA.txt").write_text(
        "These folders were written by `python -m fer_data.datasets demo`: procedurally "
        "drawn, synthetic faces in the original layout of each dataset. They are not real "
        "datasets.\nDelete them and put your downloads here to process real data.\n")
    return counts


# the registry's demo writers (fer_data/datasets.py), one per dataset

def fer2013(folder: Path, cast: Cast, rng: np.random.Generator) -> int:
    return _write_fer2013(folder, cast.crowd, rng)


def face_expression(folder: Path, cast: Cast, rng: np.random.Generator) -> int:
    # a repackage: FER2013's very faces (its stream replayed) plus some of its own
    fer_faces = _fer_rows(cast.crowd, copy.deepcopy(cast.streams["fer2013"]))
    return _write_face_expression(folder, fer_faces, cast.crowd, rng)


def ckplus(folder: Path, cast: Cast, rng: np.random.Generator) -> int:
    return _write_ckplus(folder, cast.people[:cast.spec.ckplus_subjects], rng)


def kdef(folder: Path, cast: Cast, rng: np.random.Generator) -> int:
    return _write_kdef(folder, cast.people[6:6 + cast.spec.kdef_subjects], rng)


def jaffe(folder: Path, cast: Cast, rng: np.random.Generator) -> int:
    return _write_jaffe(folder, cast.people[10:10 + cast.spec.jaffe_posers], rng)


def ravdess(folder: Path, cast: Cast, rng: np.random.Generator) -> int:
    return _write_ravdess(folder, cast.people[14:14 + cast.spec.ravdess_actors], cast.spec, rng)


def rafdb(folder: Path, cast: Cast, rng: np.random.Generator) -> int:
    return wild.rafdb(folder, cast.crowd, rng)


def expw(folder: Path, cast: Cast, rng: np.random.Generator) -> int:
    return wild.expw(folder, cast.crowd, rng)


def affectnet(folder: Path, cast: Cast, rng: np.random.Generator) -> int:
    return wild.affectnet(folder, cast.crowd, rng)


def tight_face(ident: Identity, expression: str, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 gray face crop in the style of FER2013."""
    # in-the-wild variety: head pose, framing and strong side light, as in FER2013
    pose = random_pose(rng, amount=1.8)
    pose = replace(pose, scale=pose.scale * TIGHT_CROP,
                   light_strength=rng.uniform(0.1, 0.45))
    shade = int(rng.integers(40, 250))
    ident = replace(ident, background=(shade, shade, shade),
                    hair_volume=float(rng.uniform(0.0, 0.1)))
    return to_gray(draw_face(ident, expression, pose, size=(48, 48), rng=rng))


def _fer_rows(people, rng) -> list[tuple[str, str, np.ndarray]]:
    """(usage, label, 48x48 pixels) for the FER2013 demo rows, in file order."""
    rows = []
    for label, n in FER_COUNTS.items():
        for _ in range(n):
            usage = rng.choice(["Training", "PublicTest", "PrivateTest"], p=[0.8, 0.1, 0.1])
            person = people[int(rng.integers(len(people)))]
            rows.append((str(usage), label, tight_face(person, label, rng)))
    return [rows[i] for i in rng.permutation(len(rows))]


def _write_fer2013(folder: Path, people, rng) -> int:
    """fer2013.csv plus FER+ votes in fer2013new.csv."""
    rows = _fer_rows(people, rng)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["emotion,pixels,Usage"]
    lines += [f"{FER7.index(label)},{' '.join(map(str, pixels.ravel()))},{usage}"
              for usage, label, pixels in rows]
    (folder / "fer2013.csv").write_text("\n".join(lines) + "\n")
    _write_ferplus(folder / "fer2013new.csv", rows, rng)
    return len(rows)


def _write_ferplus(path: Path, rows, rng) -> None:
    columns = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
               "contempt", "unknown", "NF"]
    plus_name = {"neutral": "neutral", "happy": "happiness", "surprise": "surprise",
                 "sad": "sadness", "angry": "anger", "disgust": "disgust", "fear": "fear"}
    lines = ["Usage,Image name," + ",".join(columns)]
    for i, (usage, label, _) in enumerate(rows):
        votes = dict.fromkeys(columns, 0)
        votes[plus_name[label]] = int(rng.integers(6, 10))
        votes[columns[int(rng.integers(len(columns) - 2))]] += 10 - votes[plus_name[label]]
        lines.append(f"{usage},fer{i:07d}.png," + ",".join(str(votes[c]) for c in columns))
    path.write_text("\n".join(lines) + "\n")


def _write_face_expression(folder: Path, fer_faces, people, rng) -> int:
    """Kaggle layout images/{train,validation}/<class>/<n>.jpg; about a third of it repackages
    the FER2013 demo rows (re-encoded JPEGs), as the real Kaggle set repackages FER2013."""
    items = [(label, pixels) for _, label, pixels in fer_faces[: len(fer_faces) // 3]]
    for label, n in FACE_EXPRESSION_NEW.items():
        person_ids = rng.integers(len(people), size=n)
        items += [(label, tight_face(people[int(p)], label, rng)) for p in person_ids]
    for number, index in enumerate(rng.permutation(len(items))):
        label, pixels = items[int(index)]
        split = "validation" if rng.random() < 0.2 else "train"
        target = folder / "images" / split / label / f"{number + 1}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target, quality=int(rng.integers(85, 96)))
    return len(items)


def _write_ckplus(folder: Path, people, rng) -> int:
    """cohn-kanade-images/S0xx/00y/*.png sequences (neutral -> peak) + Emotion/ label files."""
    codes = {"angry": 1, "contempt": 2, "disgust": 3, "fear": 4, "happy": 5, "sad": 6,
             "surprise": 7}
    written = 0
    for s, person in enumerate(people):
        subject = f"S{50 + 5 * s:03d}"
        chosen = rng.choice(list(codes), size=5, replace=False)
        pose = random_pose(rng, amount=0.4)
        for q, label in enumerate(chosen, start=1):
            n_frames = int(rng.integers(6, 9))
            seq = folder / "cohn-kanade-images" / subject / f"{q:03d}"
            seq.mkdir(parents=True, exist_ok=True)
            for f in range(1, n_frames + 1):
                t = (f - 1) / (n_frames - 1)
                expression = EXPRESSIONS["neutral"].blend(EXPRESSIONS[label], t)
                img = to_gray(draw_face(person, expression, pose, size=(320, 240), rng=rng))
                Image.fromarray(img).save(seq / f"{subject}_{q:03d}_{f:08d}.png")
                written += 1
            emotion = folder / "Emotion" / subject / f"{q:03d}"
            emotion.mkdir(parents=True, exist_ok=True)
            (emotion / f"{subject}_{q:03d}_{n_frames:08d}_emotion.txt").write_text(
                f"   {codes[label]:.7e}\n")
    return written


def _write_kdef(folder: Path, people, rng) -> int:
    """KDEF/<session><gender><id>/<name>.JPG in colour, three of the five angles."""
    angles = {"S": 0.0, "HL": -0.2, "HR": 0.2}
    written = 0
    for i, person in enumerate(people):
        gender, number = ("F", "M")[i % 2], f"{i // 2 + 1:02d}"
        base = folder / "KDEF" / f"A{gender}{number}"
        base.mkdir(parents=True, exist_ok=True)
        for code, label in KDEF_CODES.items():
            for angle, yaw in angles.items():
                pose = replace(random_pose(rng, amount=0.3), yaw=yaw)
                img = draw_face(person, label, pose, size=(200, 270), rng=rng)
                Image.fromarray(img).save(base / f"A{gender}{number}{code}{angle}.JPG", quality=92)
                written += 1
    return written


def _write_jaffe(folder: Path, people, rng) -> int:
    """jaffe/KA.AN1.39.tiff, 256x256 gray; every other file is a palette TIFF, as some real
    JAFFE files are."""
    posers = ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]
    written, number = 0, 1
    (folder / "jaffe").mkdir(parents=True, exist_ok=True)
    for poser, person in zip(posers, people, strict=False):
        for code, label in JAFFE_CODES.items():
            for take in (1, 2):
                img = Image.fromarray(to_gray(draw_face(person, label, random_pose(rng, 0.4),
                                                        size=(256, 256), rng=rng)))
                if written % 2:
                    img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
                img.save(folder / "jaffe" / f"{poser}.{code}{take}.{number}.tiff")
                written, number = written + 1, number + 1
    return written


def _write_ravdess(folder: Path, people, spec: DemoSpec, rng) -> int:
    """Actor_XX/02-01-EE-II-01-01-XX.mp4 (video-only speech clips), H.264, the face moving from
    neutral to the target expression and holding it."""
    written = 0
    for a, person in enumerate(people, start=1):
        actor = folder / f"Actor_{a:02d}"
        actor.mkdir(parents=True, exist_ok=True)
        pose = random_pose(rng, amount=0.3)
        for code, label in RAVDESS_CODES.items():
            intensity = 1 if label == "neutral" else 2
            name = f"02-01-{code:02d}-{intensity:02d}-01-01-{a:02d}.mp4"
            frames = _onset_frames(person, label, pose, spec, rng)
            encode_h264(frames, actor / name, spec.video_fps)
            written += 1
    return written


def _onset_frames(person, label, pose, spec: DemoSpec, rng) -> list[np.ndarray]:
    """Neutral for 0.4 s, onset over 0.8 s, then held, while the actor speaks the statement
    (the mouth opens and closes); frames also carry sensor noise, which frame de-duplication
    must see through."""
    n = int(spec.video_seconds * spec.video_fps)
    rendered: dict[tuple[float, int], np.ndarray] = {}
    frames = []
    for i in range(n):
        seconds = i / spec.video_fps
        t = min(max((seconds - 0.4) / 0.8, 0.0), 1.0)
        t = round(t * 8) / 8  # at most nine distinct expression steps
        syllable = int(round(2 * abs(math.sin(seconds * 5.0)))) if 0.5 < seconds < 1.9 else 0
        if (t, syllable) not in rendered:
            expression = EXPRESSIONS["neutral"].blend(EXPRESSIONS[label], t)
            expression = replace(expression, mouth_open=expression.mouth_open + 0.45 * syllable)
            rendered[t, syllable] = draw_face(person, expression, pose, size=spec.video_size)
        image = rendered[t, syllable]
        noisy = image.astype(np.float32) + rng.normal(0, 2.0, image.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return frames


def encode_h264(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """Encode RGB frames as an H.264 MP4 (yuv420p, bit-exact settings for reproducible files)."""
    height, width, _ = frames[0].shape
    cmd = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
           "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata",
           "-1", str(path)]
    data = b"".join(f.tobytes() for f in frames)
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {proc.stderr.decode(errors='replace')}")
