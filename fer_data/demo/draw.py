"""Procedural face drawing for the built-in demo datasets.

The faces are cartoons, but drawn the way face detectors see faces: a shaded oval framed by hair,
dark eye sockets under heavy brows, a nose shadow and a mouth. Both the OpenCV frontal Haar cascade
and MTCNN find them. Expressions move the features the way FACS action units do (brows, eye
opening, mouth curve and opening, and a wrinkled nose with a raised upper lip for disgust).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fer_data.labels import FER7

SUPERSAMPLE = 4


@dataclass(frozen=True)
class Identity:
    """What stays the same across one person's pictures."""

    face_w: float  # half-width of the face oval, as a fraction of the image height
    face_h: float  # half-height of the face oval
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_volume: float  # how far the hair reaches beyond the face oval
    eye_spacing: float  # half distance between the eyes, fraction of face_w
    eye_size: float
    mouth_width: float
    background: tuple[int, int, int]
    fringe: float = 0.62  # hairline height: 0.45 (low fringe) .. 0.8 (high forehead)
    parting: float = 0.0  # -1..1: the fringe sweeps to one side
    long_hair: float = 0.0  # 0..1: hair falling beside the face
    beard: float = 0.0  # 0..1: stubble darkening the jaw


@dataclass(frozen=True)
class Expression:
    """Feature displacements; all zero is a neutral face."""

    mouth_curve: float = 0.0  # + smile, - frown
    mouth_open: float = 0.0
    brow_raise: float = 0.0
    brow_tilt: float = 0.0  # + inner ends up (sad, fear), - inner ends down (anger)
    eye_open: float = 1.0
    nose_wrinkle: float = 0.0
    lip_raise: float = 0.0

    def blend(self, other: "Expression", t: float) -> "Expression":
        """Linear blend from self (t=0) to other (t=1), for onset videos."""
        values = {
            name: (1 - t) * getattr(self, name) + t * getattr(other, name)
            for name in self.__dataclass_fields__
        }
        return Expression(**values)


EXPRESSIONS: dict[str, Expression] = {
    "neutral": Expression(),
    "happy": Expression(mouth_curve=1.0, mouth_open=0.35, eye_open=0.7, brow_raise=0.1),
    "sad": Expression(mouth_curve=-0.8, brow_tilt=0.9, eye_open=0.8, brow_raise=0.1),
    "angry": Expression(mouth_curve=-0.35, brow_raise=-0.8, brow_tilt=-1.0, eye_open=0.85,
                        mouth_open=0.1),
    "surprise": Expression(mouth_open=0.7, brow_raise=0.8, eye_open=1.25),
    "fear": Expression(mouth_open=0.5, mouth_curve=-0.3, brow_raise=0.7, brow_tilt=0.6,
                       eye_open=1.2),
    "disgust": Expression(mouth_curve=-0.45, brow_raise=-0.5, brow_tilt=-0.4, eye_open=0.65,
                          nose_wrinkle=1.0, lip_raise=1.0),
    # RAVDESS "calm" and CK+ "contempt" exist in the raw data, so the demo draws them too.
    "calm": Expression(mouth_curve=0.25, eye_open=0.85),
    "contempt": Expression(mouth_curve=0.2, lip_raise=0.3, brow_raise=-0.1),
}
assert set(FER7) <= set(EXPRESSIONS)


@dataclass(frozen=True)
class Pose:
    """Where the face sits in the picture and how it is lit."""

    roll_deg: float = 0.0
    yaw: float = 0.0  # -1..1: features shift sideways as the head turns
    dx: float = 0.0  # centre offset, fraction of the image width
    dy: float = 0.0
    scale: float = 1.0
    light_angle: float = 0.0  # direction of the brighter side, radians
    light_strength: float = 0.15


def random_identity(rng: np.random.Generator) -> Identity:
    """Draw a person: face shape, skin tone, hair, eye spacing."""
    tone = rng.uniform(0.45, 0.95)
    skin = (int(235 * tone), int(190 * tone), int(160 * tone))
    hair_tone = rng.uniform(0.05, 0.45)
    hair = (int(120 * hair_tone), int(90 * hair_tone), int(70 * hair_tone))
    bg = int(rng.uniform(90, 240))
    return Identity(
        face_w=float(rng.uniform(0.24, 0.29)),
        face_h=float(rng.uniform(0.33, 0.355)),
        skin=skin,
        hair=hair,
        hair_volume=float(rng.uniform(0.02, 0.06)),
        eye_spacing=float(rng.uniform(0.38, 0.46)),
        eye_size=float(rng.uniform(0.85, 1.15)),
        mouth_width=float(rng.uniform(0.36, 0.46)),
        background=(bg, bg, int(bg * rng.uniform(0.9, 1.0))),
        fringe=float(rng.uniform(0.45, 0.8)),
        parting=float(rng.uniform(-1, 1)),
        long_hair=float(rng.choice([0.0, rng.uniform(0.4, 1.0)])),
        beard=float(rng.choice([0.0, 0.0, rng.uniform(0.3, 0.7)])),
    )


def random_pose(rng: np.random.Generator, amount: float = 1.0) -> Pose:
    """Mild pose and lighting variation; amount=0 gives a frontal, evenly lit face."""
    return Pose(
        roll_deg=float(rng.uniform(-8, 8) * amount),
        yaw=float(rng.uniform(-0.25, 0.25) * amount),
        dx=float(rng.uniform(-0.04, 0.04) * amount),
        dy=float(rng.uniform(-0.03, 0.03) * amount),
        scale=float(1 + rng.uniform(-0.06, 0.06) * amount),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_strength=float(rng.uniform(0.05, 0.25) * amount),
    )


def face_geometry(identity: Identity, pose: Pose, size: tuple[int, int]) -> dict:
    """Where draw_face puts the face in its output (before roll): the box x1, y1, x2, y2 of
    the face oval and the two eye centres, image-left first; the demo's given boxes and
    landmarks (RAF-DB, ExpW, AffectNet) come from here."""
    width, height = size
    unit = height * pose.scale
    cx, cy = width / 2 + pose.dx * width, height / 2 + pose.dy * height
    fw, fh = identity.face_w * unit, identity.face_h * unit
    shift = pose.yaw * fw * 0.35
    eye_y = cy - 0.12 * fh
    eyes = [(cx + shift + side * identity.eye_spacing * fw, eye_y) for side in (-1, 1)]
    return {"box": (cx - fw, cy - fh, cx + fw, cy + fh), "eyes": eyes}


def draw_face(
    identity: Identity,
    expression: Expression | str,
    pose: Pose = Pose(),
    size: tuple[int, int] = (256, 256),
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render one face as an RGB uint8 array of shape (height, width, 3).

    Args:
        identity: the person.
        expression: an `Expression` or a key of `EXPRESSIONS`.
        pose: placement, rotation and lighting.
        size: (width, height) of the output.
        rng: source of sensor noise; None gives a noise-free image.
    """
    if isinstance(expression, str):
        expression = EXPRESSIONS[expression]
    width, height = size
    ss = SUPERSAMPLE if max(size) < 160 else 2  # large images need less anti-aliasing
    W, H = width * ss, height * ss
    unit = H * pose.scale  # all geometry is relative to the image height
    cx = W / 2 + pose.dx * W
    cy = H / 2 + pose.dy * H
    fw, fh = identity.face_w * unit, identity.face_h * unit
    shift = pose.yaw * fw * 0.35  # features move towards the turned side

    canvas = Image.new("RGB", (W, H), identity.background)
    draw = ImageDraw.Draw(canvas)
    _draw_hair_and_neck(draw, identity, cx, cy, fw, fh)
    draw.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=identity.skin)
    face = _shade_face(np.asarray(canvas, dtype=np.float32), cx, cy, fw, fh, identity)
    canvas = Image.fromarray(face)
    draw = ImageDraw.Draw(canvas)
    features = Image.new("L", (W, H), 0)  # darkness layer, blurred for soft shadows
    fdraw = ImageDraw.Draw(features)
    eye_y = cy - 0.12 * fh
    for side in (-1, 1):
        ex = cx + shift + side * identity.eye_spacing * fw
        _draw_eye_region(draw, fdraw, ex, eye_y, side, fw, fh, identity, expression)
    _draw_nose(fdraw, cx + shift * 1.2, cy, fw, fh, expression)
    canvas = _apply_darkness(canvas, features, blur=0.012 * unit)
    draw = ImageDraw.Draw(canvas)
    _draw_mouth(draw, cx + shift, cy + 0.48 * fh, fw, fh, identity, expression)

    small = canvas.resize((width, height), Image.LANCZOS)
    small = small.rotate(pose.roll_deg, resample=Image.BICUBIC, center=(cx / ss, cy / ss),
                         fillcolor=identity.background)
    image = np.asarray(small, dtype=np.float32)
    image *= _lighting(width, height, pose)[..., None]
    if rng is not None:
        image += rng.normal(0, 3.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_hair_and_neck(draw: ImageDraw.ImageDraw, ident: Identity, cx, cy, fw, fh) -> None:
    neck_w = fw * 0.55
    draw.rectangle([cx - neck_w, cy + fh * 0.6, cx + neck_w, cy + fh * 1.6],
                   fill=tuple(int(c * 0.8) for c in ident.skin))
    v = ident.hair_volume * fh * 3
    draw.ellipse([cx - fw - v, cy - fh - v, cx + fw + v, cy + fh * 0.25], fill=ident.hair)
    if ident.long_hair > 0:  # hair falling to the shoulders on both sides
        drop = cy + fh * (0.2 + 0.9 * ident.long_hair)
        draw.rectangle([cx - fw - v, cy - fh * 0.2, cx - fw * 0.7, drop], fill=ident.hair)
        draw.rectangle([cx + fw * 0.7, cy - fh * 0.2, cx + fw + v, drop], fill=ident.hair)


def _shade_face(rgb: np.ndarray, cx, cy, fw, fh, ident: Identity) -> np.ndarray:
    """Darken the face towards its rim (a round face catches less light at the edges) and
    draw the hairline over the forehead."""
    H, W, _ = rgb.shape
    top, bottom = max(int(cy - fh), 0), min(int(cy + fh) + 1, H)
    left, right = max(int(cx - fw), 0), min(int(cx + fw) + 1, W)
    y, x = np.ogrid[top:bottom, left:right]
    r2 = ((x - cx) / fw) ** 2 + ((y - cy) / fh) ** 2
    inside = r2 <= 1.0
    box = rgb[top:bottom, left:right]
    box *= np.where(inside, 1.0 - 0.35 * r2**2, 1.0)[..., None]
    u = (x - cx) / fw
    hairline = cy - fh * ident.fringe + 0.08 * fh * np.cos(u * 3.0) - 0.12 * fh * ident.parting * u
    box[inside & (y < hairline)] = ident.hair
    if ident.beard > 0:  # stubble: the jaw below the mouth line darkens
        jaw = inside & (y > cy + fh * 0.62)
        box[jaw] *= 1 - 0.4 * ident.beard
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _draw_eye_region(draw, fdraw, ex, ey, side, fw, fh, ident: Identity, e: Expression) -> None:
    ew = 0.2 * fw * ident.eye_size
    eh = 0.085 * fh * ident.eye_size * e.eye_open
    # eye socket: a broad soft shadow, what cascades key on
    sw, sh = ew * 1.45, 0.16 * fh
    fdraw.ellipse([ex - sw, ey - sh * 1.1, ex + sw, ey + sh * 0.8], fill=120)
    # brow: a thick bar whose inner end moves with tilt
    brow_y = ey - 0.2 * fh - e.brow_raise * 0.07 * fh
    inner_dy = -e.brow_tilt * 0.06 * fh
    inner = (ex - side * ew * 1.2, brow_y + inner_dy)
    outer = (ex + side * ew * 1.3, brow_y - inner_dy * 0.3 + 0.02 * fh)
    fdraw.line([inner, outer], fill=255, width=max(1, int(0.07 * fh)))
    # sclera, iris, pupil
    draw.ellipse([ex - ew, ey - eh, ex + ew, ey + eh], fill=(200, 200, 195))
    ir = min(ew * 0.5, max(eh, 1.0))
    draw.ellipse([ex - ir, ey - ir, ex + ir, ey + ir], fill=(60, 45, 35))
    pr = ir * 0.45
    draw.ellipse([ex - pr, ey - pr, ex + pr, ey + pr], fill=(10, 10, 10))
    # upper lid line keeps squinting eyes visible as dark slits
    draw.line([(ex - ew, ey), (ex, ey - eh), (ex + ew, ey)], fill=(40, 30, 25),
              width=max(1, int(0.02 * fh)))


def _draw_nose(fdraw, nx, cy, fw, fh, e: Expression) -> None:
    tip = cy + 0.22 * fh
    fdraw.line([(nx + 0.04 * fw, cy - 0.05 * fh), (nx + 0.07 * fw, tip)], fill=110,
               width=max(1, int(0.03 * fh)))
    for side in (-1, 1):
        r = 0.045 * fw
        fdraw.ellipse([nx + side * 0.09 * fw - r, tip - r * 0.6, nx + side * 0.09 * fw + r,
                       tip + r * 0.6], fill=190)
    if e.nose_wrinkle > 0:  # horizontal creases across the bridge
        for k in range(3):
            y = cy - 0.02 * fh + k * 0.05 * fh
            fdraw.line([(nx - 0.1 * fw, y), (nx + 0.1 * fw, y - 0.01 * fh)],
                       fill=int(255 * e.nose_wrinkle), width=max(1, int(0.03 * fh)))


def _draw_mouth(draw, mx, my, fw, fh, ident: Identity, e: Expression) -> None:
    half = ident.mouth_width * fw * (1 + 0.12 * max(e.mouth_curve, 0) - 0.15 * e.mouth_open)
    curve = e.mouth_curve * 0.09 * fh
    lip = tuple(int(c * 0.55) for c in ident.skin)
    upper = my - e.lip_raise * 0.05 * fh
    xs = np.linspace(-1, 1, 24)
    # a smile lifts the corners: y = my - curve * x^2 relative to the centre
    opening = e.mouth_open * 0.18 * fh
    top = [(mx + half * x, upper - curve * x * x) for x in xs]
    bottom = [(mx + half * x, my - curve * x * x + opening * (1 - x * x)) for x in xs[::-1]]
    if opening > 0.01 * fh:
        draw.polygon(top + bottom, fill=(25, 10, 10))
        if e.mouth_curve > 0.5:  # teeth in a broad smile
            draw.line(top[4:-4], fill=(230, 230, 225), width=max(1, int(opening * 0.35)))
        draw.line(top, fill=lip, width=max(1, int(0.03 * fh)))
        draw.line(bottom, fill=lip, width=max(1, int(0.035 * fh)))
    else:
        draw.line(top, fill=(60, 25, 25), width=max(1, int(0.035 * fh)))


def _apply_darkness(canvas: Image.Image, darkness: Image.Image, blur: float) -> Image.Image:
    dark = np.asarray(darkness.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32) / 255
    rgb = np.asarray(canvas, dtype=np.float32) * (1 - 0.8 * dark[..., None])
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _lighting(width: int, height: int, pose: Pose) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (x / width - 0.5) * math.cos(pose.light_angle) + (y / height - 0.5) * math.sin(
        pose.light_angle)
    return 1.0 + pose.light_strength * 2 * u


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, as PIL's convert('L') computes it."""
    return np.asarray(Image.fromarray(rgb).convert("L"))

