"""RAVDESS clips through real ffmpeg: sampling, pHash de-duplication, corrupt files."""

from __future__ import annotations

import json

import imagehash
import numpy as np
import pytest
from PIL import Image

from fer_data.demo import encode_h264
from fer_data.frames import FrameOptions, VideoError, decode_frames, extract_frames
from fer_data.ingest import ingest_dataset
from fer_data.phash import hamming, phash_batch, to_hex


def moving_square_clip(path, seconds=2.0, fps=10, size=(96, 64)):
    """A bright square that sits still for the first half, then moves: frames of the first
    half are redundant, frames of the second half are not."""
    frames = []
    for i in range(int(seconds * fps)):
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        x = 10 if i < seconds * fps / 2 else 10 + (i - seconds * fps / 2) * 6
        frame[20:44, int(x):int(x) + 24] = 220
        frames.append(frame)
    encode_h264(frames, path, fps)
    return path


def test_phash_batch_is_bit_identical_to_imagehash(demo_raw):
    images = [Image.open(p) for p in sorted((demo_raw / "kdef").rglob("*.JPG"))[:40]]
    images += [Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 48), np.uint8))
               for i in range(20)]
    ours = phash_batch(images)
    assert [to_hex(h) for h in ours] == [str(imagehash.phash(im)) for im in images]
    assert hamming(ours[0], ours[0]) == 0
    assert int(hamming(ours[0], ours[1])) == imagehash.phash(images[0]) - imagehash.phash(images[1])


def test_phash_matches_imagehash_on_real_fer2013(shared):
    files = sorted((shared / "fer2013_images" / "train" / "fear").glob("*.jpg"))[:500]
    images = [Image.open(f) for f in files]
    assert [to_hex(h) for h in phash_batch(images)] == [str(imagehash.phash(i)) for i in images]


def test_sampling_rate_and_dedup_on_a_generated_clip(tmp_path):
    clip = moving_square_clip(tmp_path / "clip.mp4")
    frames = decode_frames(clip, FrameOptions(fps=5))
    assert len(frames) == 10 and frames[0].shape == (64, 96)
    result = extract_frames(clip, FrameOptions(fps=5, hash_threshold=4))
    assert result.sampled == 10
    assert 2 <= len(result.kept) < 10
    assert result.kept[0].index == 0 and result.kept[-1].index >= 5
    assert all(f.index < 5 for f, _, _ in result.dropped[:3])  # the still half is dropped
    skipped = decode_frames(clip, FrameOptions(fps=5, skip_ms=1000))
    assert len(skipped) == 5


def test_truncated_and_garbage_videos_raise_ffmpeg_reason(tmp_path):
    clip = moving_square_clip(tmp_path / "clip.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[:600])
    with pytest.raises(VideoError, match="(?i)invalid|moov|error|no video"):
        extract_frames(truncated, FrameOptions())
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 50)
    with pytest.raises(VideoError):
        extract_frames(garbage, FrameOptions())


def test_ravdess_reader_on_actor_folders(tmp_path):
    actor = tmp_path / "ravdess" / "Actor_02"
    actor.mkdir(parents=True)
    good = moving_square_clip(actor / "02-01-07-02-01-01-02.mp4")
    (actor / "01-02-03-01-02-01-02.mp4").write_bytes(good.read_bytes()[:500])  # truncated
    (actor / "03-01-05-01-01-01-02.wav").write_bytes(b"RIFF")  # audio-only
    (actor / "clip-final.mp4").write_bytes(good.read_bytes())

    result = ingest_dataset(tmp_path, "ravdess", )

    assert result.accounted and result.inputs == 4
    frames = result.records.to_pylist()
    assert 2 <= len(frames) < 20
    first = frames[0]
    attrs = json.loads(first["attributes"])
    assert first["label"] == "disgust" and first["subject_id"] == "ravdess:02"
    assert attrs["intensity"] == "strong" and attrs["gender"] == "female"
    assert [f["frame_index"] for f in frames] == sorted(f["frame_index"] for f in frames)
    assert {json.loads(f["attributes"])["time_ms"] for f in frames} >= {0}
    why = {}
    for row in result.rejects.to_pylist():
        why.setdefault(row["source_path"], set()).add(row["reason"])
    assert why["Actor_02/01-02-03-01-02-01-02.mp4"] == {"corrupt_video"}
    assert why["Actor_02/03-01-05-01-01-01-02.wav"] == {"audio_only"}
    assert why["Actor_02/clip-final.mp4"] == {"unparsable_name"}
    assert why["Actor_02/02-01-07-02-01-01-02.mp4"] == {"redundant_frame"}
