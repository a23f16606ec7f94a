"""MTCNN's three stages on CPU at the speed of their work.

facenet-pytorch's `detect_face` with its weights, thresholds and box arithmetic (its helpers are
imported, not rewritten), with two changes that leave the boxes as they were (tests/test_faces.py
compares against facenet-pytorch itself; bench/faces.py measures both on real frames):

- the three networks run in channels_last memory format: PyTorch's CPU max-pooling, a third of
  MTCNN's time on 640x490 frames, is 4-16x faster on it;
- every area resize (each level of the image pyramid, and each candidate box cropped to 24 or 48
  px for the second and third stage, which facenet-pytorch does in a Python loop of one slice
  and one resize per box: hundreds per frame) is read from one summed-area table per image, all
  boxes at once. Area resizing averages, for output pixel i, the source rows floor(i*h/n) ..
  ceil((i+1)*h/n) (and the same for columns), so four lookups give each output pixel exactly, up
  to float rounding.

And, optionally (`large_face_fraction`, on in the pipeline), the pyramid runs coarse to fine:
the finer levels, most of PNet's work, run only for images without a large face, which is all
they could have changed the chosen face for (see `detect_face`).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
from torchvision.ops.boxes import batched_nms


def speed_up(mtcnn) -> None:
    """Put a facenet_pytorch.MTCNN's three networks in channels_last memory format, in place."""
    for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet):
        net.to(memory_format=torch.channels_last)


def _bounds(starts: torch.Tensor, lengths: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """Per box (rows), the first and one-past-last source index of each of n output cells, as
    adaptive average pooling (torch's mode="area") chooses them."""
    i = torch.arange(n)
    lo = (i[None] * lengths[:, None]) // n
    hi = ((i[None] + 1) * lengths[:, None] + n - 1) // n
    return starts[:, None] + lo, starts[:, None] + hi


def summed_area_tables(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, H + 1, W + 1, C) sums of every top-left rectangle: exact
    int32 (half the memory traffic of float64) unless an image's sum could overflow it."""
    _, h, w, _ = images.shape
    depth = cv2.CV_32S if h * w * 255 < 2**31 else cv2.CV_64F
    return torch.from_numpy(np.stack([cv2.integral(im, sdepth=depth) for im in images]))


def area_resize(tables: torch.Tensor, image_inds: torch.Tensor, y0, y1, x0, x1,
                out_h: int, out_w: int) -> torch.Tensor:
    """Boxes [y0, y1) x [x0, x1) of images[image_inds], each resized to out_h x out_w as
    torch's mode="area" does, from the images' summed-area tables: (B, C, out_h, out_w)
    float32 in channels_last memory format."""
    _, height, width, channels = tables.shape
    top, bottom = _bounds(y0, y1 - y0, out_h)  # (B, out_h)
    left, right = _bounds(x0, x1 - x0, out_w)  # (B, out_w)
    base = image_inds[:, None, None, None] * (height * width * channels)
    c = torch.arange(channels)

    def at(rows, cols):  # (B, out_h, out_w, C) table values
        return tables.take(base + (rows[:, :, None, None] * width + cols[:, None, :, None])
                           * channels + c)

    sums = at(bottom, right) - at(top, right) - at(bottom, left) + at(top, left)
    area = (bottom - top)[:, :, None, None] * (right - left)[:, None, :, None]
    return (sums.double() / area).float().permute(0, 3, 1, 2)


@functools.lru_cache(maxsize=256)
def _level_bounds(height: int, width: int, out_h: int, out_w: int) -> tuple[torch.Tensor, ...]:
    """Source rows and columns of each output cell of a whole image resized (see _bounds)."""
    zero = torch.zeros(1, dtype=torch.long)
    top, bottom = (v[0] for v in _bounds(zero, torch.tensor([height]), out_h))
    left, right = (v[0] for v in _bounds(zero, torch.tensor([width]), out_w))
    return top, bottom, left, right


def resize_whole(tables: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Every image resized to out_h x out_w as torch's mode="area" does (one level of the image
    pyramid), from the summed-area tables: row differences, then column differences."""
    _, height, width, _ = tables.shape
    top, bottom, left, right = _level_bounds(height - 1, width - 1, out_h, out_w)
    rows = tables.index_select(1, bottom) - tables.index_select(1, top)
    sums = rows.index_select(2, right) - rows.index_select(2, left)
    area = (bottom - top)[:, None, None] * (right - left)[None, :, None]
    return (sums.double() / area).float().permute(0, 3, 1, 2)


def _crops(tables, boxes, image_inds, size):
    """facenet-pytorch's crop of each box (clipped to the image by its `pad`), resized to
    size x size and normalized as its networks expect; and which boxes had a crop."""
    from facenet_pytorch.models.utils.detect_face import pad

    _, h1, w1, _ = tables.shape
    y, ey, x, ex = (torch.as_tensor(v, dtype=torch.long) for v in pad(boxes, w1 - 1, h1 - 1))
    keep = (ey > y - 1) & (ex > x - 1)  # facenet-pytorch skips empty crops the same way
    crops = area_resize(tables, image_inds[keep], y[keep] - 1, ey[keep], x[keep] - 1,
                        ex[keep], size, size)
    return (crops - 127.5) * 0.0078125, keep


@torch.inference_mode()
def detect_face(images: np.ndarray, mtcnn, large_face_fraction: float = 0.0,
                confident_score: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """MTCNN on a stack of equal-size RGB images (N, H, W, 3) uint8: per image, its boxes
    (k, 5: x1, y1, x2, y2, probability) and landmarks (k, 5, 2), as facenet_pytorch's
    `detect_face` computes them with this MTCNN's thresholds, factor and min_face_size. The
    networks run where they are (CPU or CUDA).

    With `large_face_fraction` > 0, the image pyramid runs coarse to fine: first only the
    levels for faces of at least half that share of the shorter side; an image with a face of
    at least `confident_score` whose box spans that share is done (the finer levels, most of
    PNet's work, only look for smaller faces, which would not be chosen over it); every other
    image also gets the finer levels, and its boxes are then those of the whole pyramid."""
    n, h, w, _ = images.shape
    tables = summed_area_tables(images)
    m = 12.0 / mtcnn.min_face_size
    scales, scale, minl = [], m, min(h, w) * m
    while minl >= 12:  # multiplied step by step as facenet-pytorch does: the same pyramid
        scales.append(scale)
        scale, minl = scale * mtcnn.factor, minl * mtcnn.factor
    large = large_face_fraction * min(h, w)
    # fine levels: their 12 px window is smaller than half a large face
    fine = sum(12.0 / s < large / 2 for s in scales) if large > 0 else 0
    everyone = torch.arange(n)
    coarse = [_pnet_level(tables, everyone, mtcnn, s) for s in scales[fine:]]
    boxes, points, owner = _refine(tables, mtcnn, coarse)
    if fine:
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        done = np.zeros(n, bool)
        done[owner[(boxes[:, 4] >= confident_score) & (sides >= large)]] = True
        rest = torch.from_numpy(np.flatnonzero(~done))
        if len(rest):
            some = tables[rest]
            levels = [_pnet_level(some, rest, mtcnn, s) for s in scales[:fine]]
            for b, i in coarse:
                mine = torch.isin(i, rest)
                levels.append((b[mine], i[mine]))
            again = _refine(tables, mtcnn, levels)
            keep = done[owner]
            boxes, points, owner = (np.concatenate([a[keep], b]) for a, b in
                                    zip((boxes, points, owner), again, strict=True))
    return [(boxes[owner == i], points[owner == i]) for i in range(n)]


def _run(net, data: torch.Tensor) -> list[torch.Tensor]:
    device = next(net.parameters()).device
    return [out.cpu() for out in net(data.to(device))]


def _pnet_level(tables: torch.Tensor, images: torch.Tensor, mtcnn, scale: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """PNet's candidate boxes on one pyramid level of the images whose summed-area tables
    are given (their per-level non-maximum suppression done), and which image each box is in
    (`images`: the stack's image index of each table)."""
    from facenet_pytorch.models.utils.detect_face import generateBoundingBox

    _, h, w, _ = tables.shape
    level = resize_whole(tables, int((h - 1) * scale + 1), int((w - 1) * scale + 1))
    reg, probs = _run(mtcnn.pnet, (level - 127.5) * 0.0078125)
    boxes, inds = generateBoundingBox(reg, probs[:, 1], scale, mtcnn.thresholds[0])
    pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.5)
    return boxes[pick], images[inds[pick]]


def _refine(tables: torch.Tensor, mtcnn, levels: list[tuple[torch.Tensor, torch.Tensor]]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PNet candidates of every level, merged, then RNet on 24 px and ONet on 48 px crops:
    boxes (k, 5), landmarks (k, 5, 2) and the image of each."""
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg, rerec

    threshold = mtcnn.thresholds
    if not levels:  # an image too small for the smallest face
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, int)
    boxes, image_inds = torch.cat([b for b, _ in levels]), torch.cat([i for _, i in levels])
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]
    regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                         boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                         boxes[:, 4]], dim=1)
    boxes = rerec(boxes)

    # second stage: RNet on 24 px crops
    if len(boxes):
        data, keep = _crops(tables, boxes, image_inds, 24)
        boxes, image_inds = boxes[keep], image_inds[keep]
        reg, probs = _run(mtcnn.rnet, data)
        ok = probs[:, 1] > threshold[1]
        boxes = torch.cat((boxes[ok, :4], probs[ok, 1:2]), dim=1)
        image_inds, reg = image_inds[ok], reg[ok]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes = rerec(bbreg(boxes[pick], reg[pick]))
        image_inds = image_inds[pick]

    # third stage: ONet on 48 px crops, landmarks
    points = torch.zeros(0, 5, 2)
    if len(boxes):
        data, keep = _crops(tables, boxes, image_inds, 48)
        boxes, image_inds = boxes[keep], image_inds[keep]
        reg, marks, probs = _run(mtcnn.onet, data)
        ok = probs[:, 1] > threshold[2]
        boxes = torch.cat((boxes[ok, :4], probs[ok, 1:2]), dim=1)
        image_inds, reg, marks = image_inds[ok], reg[ok], marks[ok]
        bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        points = torch.stack((bw[:, None] * marks[:, :5] + boxes[:, 0:1] - 1,
                              bh[:, None] * marks[:, 5:10] + boxes[:, 1:2] - 1), dim=2)
        boxes = bbreg(boxes, reg)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]
    return boxes.numpy().reshape(-1, 5), points.numpy(), image_inds.numpy()
