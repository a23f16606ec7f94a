"""Face detection, alignment and cropping with the real MTCNN weights and Haar cascades."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize
from PIL import Image

from fer_data.defs.faces import face_crops
from fer_data.defs.ingest import raw_images
from fer_data.defs.resources import FaceDetector, PipelineSettings, StorageResource
from fer_data.demo.draw import Pose, draw_face, random_identity
from fer_data.detectors import Face, HaarDetector, MtcnnDetector
from fer_data.faces import (
    CropOptions,
    align_and_crop,
    build_face_table,
    choose_face,
    crop_faces,
    passthrough,
)
from fer_data.images import decode_png, encode_png
from fer_data.phash import phash_batch
from fer_data.storage import read_table


@pytest.fixture(scope="module")
def mtcnn():
    return MtcnnDetector(batch_size=8)


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def drawn(roll: float = 0.0, seed: int = 3) -> np.ndarray:
    person = random_identity(np.random.default_rng(seed))
    return draw_face(person, "neutral", Pose(roll_deg=roll), size=(240, 240))


def test_single_face_portraits_and_multiface_on_real_photos(shared, mtcnn):
    paths = sorted((shared / "photos").glob("*.jpg"))
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    options = CropOptions(face_size=64)
    by_mtcnn = crop_faces(images, [mtcnn], options)
    by_haar = crop_faces(images, [HaarDetector()], options)
    for path, a, b in zip(paths, by_mtcnn, by_haar, strict=True):
        assert a is not None and b is not None, path.name
        assert iou(a.box, b.box) > 0.5, path.name  # both detectors chose the same face
        assert a.face.shape == (64, 64) and a.face.dtype == np.uint8
    multi = by_mtcnn[[p.name for p in paths].index("multiface.jpg")]
    assert multi.n_faces == 6
    # the chosen face is the largest confident one
    all_faces = mtcnn.detect([images[[p.name for p in paths].index("multiface.jpg")]])[0]
    assert multi.box == max(all_faces, key=lambda f: f.area).box


def test_false_positives_lose_to_the_real_face(shared):
    # one portrait has two low-confidence MTCNN false positives besides the face, found by
    # the whole image pyramid
    path = shared / "photos" / "angelina_jolie.jpg"
    image = np.asarray(Image.open(path).convert("RGB"))
    faces = MtcnnDetector(large_face_fraction=0).detect([image])[0]
    assert len(faces) == 3
    chosen = choose_face(faces, MtcnnDetector.confident_score)
    assert chosen.score == max(f.score for f in faces) > 0.99
    # coarse to fine, the large face settles the image before the levels of small faces
    large = MtcnnDetector().detect([image])[0]
    assert len(large) == 1 and np.allclose(large[0].box, chosen.box, atol=0.01)


def real_photos_and_frames(shared) -> list[np.ndarray]:
    from fer_data.frames import FrameOptions, decode_frames

    photos = [np.asarray(Image.open(p).convert("RGB"))
              for p in sorted((shared / "photos").glob("*.jpg"))]
    frames = decode_frames(shared / "video" / "faces.mp4", FrameOptions(fps=2, max_height=540))
    return photos + [np.stack([f] * 3, axis=-1) for f in frames]  # frames come gray


def pnet_levels(detector: MtcnnDetector, image: np.ndarray) -> tuple[int, list[Face]]:
    """How many pyramid levels PNet ran on to detect the faces of one image, and the faces."""
    calls = []
    hook = detector.model.pnet.register_forward_hook(lambda *_: calls.append(1))
    try:
        faces = detector.detect([image])[0]
    finally:
        hook.remove()
    return len(calls), faces


def test_coarse_to_fine_pyramid_chooses_the_face_the_whole_pyramid_chooses(shared):
    coarse_to_fine, whole = MtcnnDetector(), MtcnnDetector(large_face_fraction=0)
    images = real_photos_and_frames(shared)
    skipped = []
    for image in images:
        (n_fast, fast), (n_whole, every) = pnet_levels(coarse_to_fine, image), pnet_levels(
            whole, image)
        a, b = (choose_face(f, MtcnnDetector.confident_score) for f in (fast, every))
        assert a is not None and b is not None
        # the same face, up to float rounding (the later stages see other batches)
        assert np.allclose(a.box, b.box, atol=0.01) and abs(a.score - b.score) < 1e-5
        large = min(b.box[2] - b.box[0], b.box[3] - b.box[1]) >= 0.2 * min(image.shape[:2])
        # a large face skips the finer levels; otherwise every level runs, each once
        assert (n_fast < n_whole) if large else (n_fast == n_whole and len(fast) == len(every))
        skipped.append(n_fast < n_whole)
    assert 3 <= sum(skipped) < len(images)  # the portraits; not the group photo or the frames


def facenet_reference(images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """facenet-pytorch's own MTCNN.detect, one image at a time: what fer_data.mtcnn must match."""
    from facenet_pytorch import MTCNN

    model = MTCNN(keep_all=True)
    out = []
    for image in images:
        boxes, probs, points = model.detect(image[None], landmarks=True)
        out.append((np.zeros((0, 5)), np.zeros((0, 5, 2))) if boxes[0] is None else
                   (np.column_stack([boxes[0], probs[0]]).astype(float), points[0]))
    return out


def assert_same_faces(ours: list[list[Face]], reference) -> None:
    for faces, (boxes, points) in zip(ours, reference, strict=True):
        assert len(faces) == len(boxes)
        # facenet-pytorch orders faces largest first; compare as sets of boxes
        mine = sorted(faces, key=lambda f: f.box)
        order = sorted(range(len(boxes)), key=lambda i: tuple(boxes[i, :4]))
        for face, i in zip(mine, order, strict=True):
            assert np.abs(np.array(face.box) - boxes[i, :4]).max() < 0.05
            assert abs(face.score - boxes[i, 4]) < 1e-4
            assert np.abs(face.landmarks - points[i]).max() < 0.05


def test_fast_mtcnn_finds_the_boxes_facenet_pytorch_finds():
    # drawn faces, one face of several sizes per image, batched as face_crops batches them
    import cv2

    images = [cv2.resize(drawn(roll, seed), (size, size))
              for roll, seed, size in [(0, 1, 480), (6, 2, 480), (-4, 3, 480), (0, 4, 160)]]
    exact = MtcnnDetector(batch_size=3, large_face_fraction=0)
    assert_same_faces(exact.detect(images), facenet_reference(images))


def test_fast_mtcnn_matches_facenet_pytorch_on_real_photos_and_frames(shared):
    images = real_photos_and_frames(shared)
    ours = MtcnnDetector(large_face_fraction=0).detect(images)
    assert sum(map(len, ours)) > len(images)  # faces found (the multi-face photo among them)
    assert_same_faces(ours, facenet_reference(images))


def test_alignment_levels_the_eyes(mtcnn):
    straight = crop_faces([drawn(0.0)], [mtcnn], CropOptions(face_size=96))[0]
    tilted_image = drawn(14.0)
    tilted = crop_faces([tilted_image], [mtcnn], CropOptions(face_size=96))[0]
    (lx, ly), (rx, ry) = tilted.landmarks[:2]
    assert abs(math.degrees(math.atan2(ry - ly, rx - lx))) > 8  # the source is tilted
    again = mtcnn.detect([np.stack([tilted.face] * 3, -1)])[0][0].landmarks
    (lx, ly), (rx, ry) = again[:2]
    assert abs(math.degrees(math.atan2(ry - ly, rx - lx))) < 3  # the crop is level
    unaligned = align_and_crop(tilted_image, Face(tilted.box, tilted.score, None),
                               CropOptions(face_size=96))
    diff_aligned = np.abs(tilted.face.astype(int) - straight.face).mean()
    diff_unaligned = np.abs(unaligned.astype(int) - straight.face).mean()
    assert diff_aligned < diff_unaligned


def test_crop_size_is_configurable_and_gray(mtcnn):
    for size in (48, 64, 224):
        crop = crop_faces([drawn()], [mtcnn], CropOptions(face_size=size))[0]
        assert crop.face.shape == (size, size)


def test_fallback_chain_and_no_face_reject(mtcnn):
    blank = np.full((120, 160, 3), 200, np.uint8)
    face = drawn()
    table = pa.Table.from_pylist([
        {"image_id": str(i), "dataset": "kdef", "source_path": f"x{i}.jpg", "frame_index": None,
         "subject_id": None, "label": "neutral", "original_label": "NE", "official_split": None,
         "image": encode_png(im), "width": im.shape[1], "height": im.shape[0],
         "attributes": None} for i, im in enumerate([face, blank])])
    result = build_face_table(table.to_batches(), [mtcnn, HaarDetector()], CropOptions())
    assert result.faces.column("source_path").to_pylist() == ["x0.jpg"]
    assert result.rejects.column("reason").to_pylist() == ["no_face"]
    assert "mtcnn, haar" in result.rejects.column("detail")[0].as_py()
    assert result.detection_rate == 0.5
    face_png = result.faces.column("face")[0].as_py()
    assert result.faces.column("phash")[0].as_py() == int(phash_batch([decode_png(face_png)])[0])
    assert len(result.faces.column("landmarks")[0].as_py()) == 10


def raw_rows(images, dataset="fer2013"):
    return pa.Table.from_pylist([
        {"image_id": str(i), "dataset": dataset, "source_path": f"r{i}.png", "frame_index": None,
         "subject_id": None, "label": "happy", "original_label": "3", "official_split": "train",
         "image": encode_png(im), "width": im.shape[1], "height": im.shape[0],
         "attributes": None} for i, im in enumerate(images)])


def test_already_cropped_datasets_keep_every_image_and_flag_doubtful_ones():
    face = np.asarray(Image.fromarray(drawn()).convert("L").resize((48, 48)))
    noise = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    result = build_face_table(raw_rows([face, noise]).to_batches(), [], CropOptions(),
                              quality=HaarDetector())
    assert result.faces.num_rows == 2 and result.rejects.num_rows == 0
    assert result.faces.column("face_found").to_pylist() == [True, False]
    assert set(result.faces.column("detector").to_pylist()) == {"none"}


def test_precropped_faces_pass_through_unchanged(mtcnn):
    """A 48x48 gray source comes out pixel for pixel, in a detector dataset too (CK+48);
    a larger or non-square one is only squared and resized."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    wide = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    result = build_face_table(raw_rows([small, wide], "ckplus").to_batches(),
                              [mtcnn, HaarDetector()], CropOptions())
    faces = [decode_png(b) for b in result.faces.column("face").to_pylist()]
    assert np.array_equal(faces[0], small)
    assert result.faces.column("detector").to_pylist() == ["none", "none"]
    assert result.faces.column("bbox").to_pylist()[1] == [10.0, 0.0, 70.0, 60.0]
    assert faces[1].shape == (48, 48)
    assert np.abs(faces[1].astype(int) - passthrough(wide[:, 10:70], 48).face).max() == 0
    rgb = np.stack([small] * 3, axis=-1)
    assert np.array_equal(passthrough(rgb, 48).face, small)
    # the keys do not depend on the crop: the source digest of both is the source's
    source = result.faces.column("source_phash").to_pylist()
    assert source[0] == result.faces.column("phash")[0].as_py()  # crop == source here
    assert source[1] == int(phash_batch([wide])[0]) != result.faces.column("phash")[1].as_py()


def test_batched_mtcnn_matches_one_by_one(mtcnn):
    images = [drawn(roll, seed) for roll, seed in [(0, 1), (5, 2), (-5, 3), (2, 4)]]
    batched = mtcnn.detect(images)
    single = [mtcnn.detect([im])[0] for im in images]
    for a, b in zip(batched, single, strict=True):
        assert len(a) == len(b) == 1
        assert iou(a[0].box, b[0].box) > 0.95


def test_materialize_ravdess_frames_and_face_crops_on_demo(demo_raw, tmp_path):
    storage = tmp_path / "storage"
    resources = {"storage_resource": StorageResource(raw_dir=str(demo_raw),
                                                     storage_dir=str(storage)),
                 "face_detector": FaceDetector(), "settings": PipelineSettings()}
    instance = DagsterInstance.ephemeral()
    for dataset in ("ravdess", "jaffe"):
        result = materialize([raw_images, face_crops], partition_key=dataset,
                             resources=resources, instance=instance)
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
    frames = read_table(storage / "raw_images" / "ravdess.parquet")
    faces = read_table(storage / "face_crops" / "ravdess.parquet")
    per_clip = {}
    for path in frames.column("source_path").to_pylist():
        per_clip[path] = per_clip.get(path, 0) + 1
    assert len(per_clip) == 16
    assert all(1 < n < 12 for n in per_clip.values())  # 12 sampled at 5 fps from 2.4 s
    assert faces.num_rows >= 0.9 * frames.num_rows
    assert set(faces.column("detector").to_pylist()) <= {"mtcnn", "haar"}
    crop = decode_png(faces.column("face")[0].as_py())
    assert crop.shape == (48, 48)
    meta = result.get_asset_materialization_events()[-1].materialization.metadata
    assert meta["preview"].value.startswith("![jaffe face crops](data:image/png;base64,")


class Fussy(HaarDetector):
    """The real Haar detector, except that it raises on one kind of image: a stand-in for
    an image some detector cannot handle (the face table is what is under test)."""

    def detect(self, images):
        if any(im.shape[1] == 250 for im in images):
            raise ValueError("cannot handle a 250 px wide image")
        return super().detect(images)


def test_an_image_a_detector_fails_on_is_its_own_reject_the_others_unchanged():
    faces = [drawn(seed=s) for s in (3, 4, 5)]
    odd = np.pad(drawn(seed=6), ((0, 0), (5, 5), (0, 0)))  # 250 px wide
    table = raw_rows([faces[0], odd, faces[1], faces[2]], dataset="kdef")
    result = build_face_table(table.to_batches(), [Fussy()], CropOptions())
    plain = build_face_table(raw_rows(faces, dataset="kdef").to_batches(), [HaarDetector()],
                             CropOptions())
    assert result.rejects.column("reason").to_pylist() == ["face_error"]
    assert "cannot handle a 250 px wide image" in result.rejects.column("detail")[0].as_py()
    assert result.rejects.column("source_path").to_pylist() == ["r1.png"]
    assert result.faces.column("face").to_pylist() == plain.faces.column("face").to_pylist()
    assert plain.faces.num_rows == 3 and result.inputs == 4
