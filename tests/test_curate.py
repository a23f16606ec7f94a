"""De-duplication, leak-free splits and publishing, read back by every reader users have."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from itertools import combinations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from fer_data.dedup import (
    KEY_COLUMNS,
    DedupOptions,
    build_index,
    correlation,
    crop_keys,
    duplicate_pairs,
    kept_pairs,
    source_keys,
    thumbnails,
)
from fer_data.hash_search import near_pairs, popcount64
from fer_data.images import encode_png
from fer_data.labels import CLASS_SETS
from fer_data.publish import PublishOptions, publish
from fer_data.splits import SplitOptions, assign_splits, check_leaks
from fer_data.torch_dataset import CuratedFaces


def brute_force_pairs(a, b, threshold, same_set):
    d = popcount64(a[:, None] ^ b[None, :])
    i, j = np.nonzero(d <= threshold)
    keep = i < j if same_set else np.ones(len(i), bool)
    return set(zip(i[keep].tolist(), j[keep].tolist(), strict=True))


@pytest.mark.parametrize("threshold", [0, 2, 4, 6, 9])
def test_multi_index_search_equals_brute_force(threshold):
    rng = np.random.default_rng(threshold)
    base = rng.integers(-(2**63), 2**63 - 1, 1500, dtype=np.int64)
    noise = np.zeros(500, np.uint64)
    for k in range(500):  # near copies, 0..8 bits away
        for bit in rng.choice(64, rng.integers(0, 9), replace=False):
            noise[k] |= np.uint64(1) << np.uint64(bit)
    hashes = np.concatenate([base, (base[:500].view(np.uint64) ^ noise).view(np.int64)])
    got = {tuple(p) for p in near_pairs(hashes, hashes, threshold, same_set=True).tolist()}
    assert got == brute_force_pairs(hashes, hashes, threshold, same_set=True)
    other = hashes[::-1].copy()
    got = {tuple(p) for p in near_pairs(hashes, other, threshold, same_set=False).tolist()}
    assert got == brute_force_pairs(hashes, other, threshold, same_set=False)


def test_neighbour_search_is_the_exact_top_k_when_every_cell_is_probed():
    """Up to PROBES cells every face meets every other: the pairs are exactly each face's k
    best-scoring faces of another group at the floor (brute force over the same projection),
    the mirror image's best k too."""
    from fer_data import neighbours
    from fer_data.dedup import thumbnails

    thumbs = thumbnails(face_rows(smooth_faces(16, seed=3), ["happy"] * 16))
    assert int(neighbours.CELLS_PER_ROOT * np.sqrt(16)) <= neighbours.PROBES
    groups = np.arange(16) // 2  # two faces a group: never paired with each other
    pairs, scores = neighbours.neighbour_pairs(thumbs, groups, k=3, floor=0.1, flips=True)
    basis = neighbours._basis(thumbs, np.random.default_rng(0))
    points = neighbours._project(thumbs, basis, False)
    mirrored = neighbours._project(thumbs, basis, True)
    expected = {}
    for query in (points, mirrored):
        score = query @ points.T
        score[groups[:, None] == groups[None, :]] = -np.inf
        for i in range(16):
            for j in np.argsort(-score[i], kind="stable")[:3]:
                if score[i, j] >= 0.1:
                    key = (min(i, int(j)), max(i, int(j)))
                    expected[key] = max(expected.get(key, -1.0), float(score[i, j]))
    assert {tuple(p) for p in pairs.tolist()} == set(expected)
    assert np.allclose(scores, [expected[tuple(p)] for p in pairs.tolist()], atol=1e-5)


def test_neighbour_search_finds_every_copy_among_thousands():
    """2,000 unrelated faces and noisy, mirrored or overlaid copies of 150 of them: the inverted
    file (92 cells, 8 probed) pairs every copy that tier 2 could accept (thumbnail correlation
    0.8 or more, mirrors too) with its origin among its 4 nearest."""
    from fer_data.dedup import correlation, thumbnails
    from fer_data.neighbours import neighbour_pairs

    originals = smooth_faces(2000, seed=4)
    rng = np.random.default_rng(5)
    copies = [np.clip(im + rng.normal(0, 6, im.shape), 0, 255).astype(np.uint8)
              for im in originals[:50]]
    copies += [np.ascontiguousarray(im[:, ::-1]) for im in originals[50:100]]
    copies += overlaid_copies(originals[100:150], seed=6)
    thumbs = thumbnails(face_rows(originals + copies, ["happy"] * 2150))
    pairs, _ = neighbour_pairs(thumbs, np.arange(2150), k=4, floor=0.6, flips=True)
    found = {tuple(p) for p in pairs.tolist()}
    own = np.array([[i, 2000 + i] for i in range(150)])
    acceptable = correlation(thumbs, own) >= 0.8
    assert acceptable[:100].all() and acceptable[100:].sum() >= 10
    assert all(tuple(p) in found for p in own[acceptable].tolist())


def test_a_group_searches_through_one_face_per_picture():
    """A group (joined by its hashes) of a face, its slightly noisy re-encodes and its mirror
    image, and a different face: only the first face and the different one search and are
    searched. A noisier copy of the group's first face outside it is still found, paired with
    that first face, and no pair names the faces it stands for."""
    from fer_data import neighbours
    from fer_data.dedup import thumbnails

    originals = smooth_faces(400, seed=7)
    rng = np.random.default_rng(8)
    face = originals[0]
    near = [np.clip(face + rng.normal(0, 1.5, face.shape), 0, 255).astype(np.uint8)
            for _ in range(5)] + [np.ascontiguousarray(face[:, ::-1])]
    outside = np.clip(face + rng.normal(0, 8, face.shape), 0, 255).astype(np.uint8)
    images = [face, *near, originals[1], outside, *originals[2:]]
    groups = np.r_[np.zeros(8, np.int64), np.arange(1, len(images) - 7)]
    thumbs = thumbnails(face_rows(images, ["happy"] * len(images)))
    basis = neighbours._basis(thumbs, np.random.default_rng(0))
    points = neighbours._project(thumbs, basis, False)
    flipped = neighbours._project(thumbs, basis, True)
    stands = neighbours.representatives(points, flipped, groups)
    assert stands[[0, 7]].all() and not stands[1:7].any() and stands[8:].all()
    pairs, _ = neighbours.neighbour_pairs(thumbs, groups, k=4, floor=0.6, flips=True)
    assert (0, 8) in {tuple(p) for p in pairs.tolist()}
    assert not np.isin(pairs, np.arange(1, 7)).any()
    # without the group, every face searches for itself and the copies find each other
    alone, _ = neighbours.neighbour_pairs(thumbs, np.arange(len(images)), k=4, floor=0.6,
                                          flips=True)
    assert np.isin(alone, np.arange(1, 7)).any()


def test_neighbour_scores_follow_the_correlation_of_real_faces_and_their_copies(shared):
    """Real FER2013 faces keep as little as 60% of their energy in the projection: the scores
    are cosines of the projections, so an overlaid copy correlating with its origin at 0.8 or
    more scores near that correlation and is among its origin's nearest (unscaled dot products
    came out 0.2-0.3 low, under the floor, for some)."""
    from PIL import Image

    from fer_data.dedup import correlation, thumbnails
    from fer_data.neighbours import neighbour_pairs

    files = sorted((shared / "fer2013_images").rglob("*.jpg"))
    rng = np.random.default_rng(11)
    originals = [np.asarray(Image.open(files[i]).convert("L"))
                 for i in rng.choice(len(files), 600, replace=False)]
    copies = overlaid_copies(originals[:200], seed=12)
    thumbs = thumbnails(face_rows(originals + copies, ["happy"] * 800))
    pairs, scores = neighbour_pairs(thumbs, np.arange(800), k=4, floor=0.65, flips=True)
    found = {tuple(p): s for p, s in zip(pairs.tolist(), scores.tolist(), strict=True)}
    own = np.array([[i, 600 + i] for i in range(200)])
    true = correlation(thumbs, own)
    wanted = own[true >= 0.8]
    assert len(wanted) >= 150
    assert all(tuple(p) in found for p in wanted.tolist())
    error = np.array([found[tuple(p)] for p in wanted.tolist()]) - true[true >= 0.8]
    assert np.abs(error).max() < 0.1, np.abs(error).max()


def face_rows(images, labels, datasets=None, subjects=None, splits=None, sources=None):
    """A face table as the faces stage writes it; `sources` (default: the faces themselves)
    are the images the crop-independent keys come from."""
    n = len(images)
    keys = {**crop_keys(images), **source_keys(sources or images)}
    return pa.table({
        "image_id": [f"id{i:03d}" for i in range(n)],
        "dataset": datasets or ["fer2013"] * n,
        "source_path": [f"f{i}.png" for i in range(n)],
        "label": labels,
        "subject_id": subjects or [None] * n,
        "official_split": splits or [None] * n,
        "face": [encode_png(im) for im in images],
        **{k: pa.array(v, pa.binary() if k == "source_thumb" else None) for k, v in keys.items()},
    })


def textures(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (6, 6)).astype(np.uint8)
        out.append(np.kron(small, np.ones((8, 8), np.uint8)))
    return out


def test_exact_near_and_mirrored_duplicates_cluster_and_one_is_kept():
    a, b, c, d = textures(4)
    noisy = np.clip(a.astype(int) + np.random.default_rng(1).integers(-3, 4, a.shape), 0,
                    255).astype(np.uint8)
    images = [a, a.copy(), noisy, np.fliplr(b), b, c, np.full((48, 48), 7, np.uint8), d]
    labels = ["happy", "happy", "happy", "sad", "sad", "fear", "angry", "neutral"]
    splits_ = ["train", "test", "train", "train", "train", "train", "train", "train"]
    result = build_index(face_rows(images, labels, splits=splits_), DedupOptions())
    rows = result.index.to_pylist()
    cluster = [r["cluster_id"] for r in rows]
    assert cluster[0] == cluster[1] == cluster[2]  # exact and near copies
    assert cluster[3] == cluster[4]  # mirrored copy
    assert len({cluster[0], cluster[3], cluster[5], cluster[7]}) == 4
    assert [r["keep"] for r in rows] == [False, True, False, True, False, True, False, True]
    assert rows[1]["official_split"] == "test"  # the most protected split's copy survives
    assert rows[0]["drop_reason"] == "duplicate" and rows[0]["drop_detail"] == "of id001"
    assert rows[6]["drop_reason"] == "low_information"
    assert result.exact_groups == 1 and result.clusters_spanning_splits == 1


def test_label_conflicts_follow_the_policy():
    a, b = textures(2, seed=5)
    images = [a, a, a, b, b]
    labels = ["happy", "happy", "sad", "fear", "angry"]
    for policy, kept in [("keep_majority", [True, False, False, False, False]),
                         ("drop_all", [False, False, False, False, False])]:
        result = build_index(face_rows(images, labels), DedupOptions(conflict_policy=policy))
        assert result.index.column("keep").to_pylist() == kept
        assert result.conflict_clusters == 2 and result.exact_conflict_groups == 2
        reasons = result.index.column("drop_reason").to_pylist()
        assert reasons[2] == reasons[3] == "label_conflict"


def test_one_subjects_posed_expressions_are_not_duplicates():
    a = textures(1)[0]
    rows = face_rows([a, a, a], ["happy", "sad", "sad"], datasets=["jaffe"] * 3,
                     subjects=["jaffe:KA"] * 3)
    index = build_index(rows, DedupOptions()).index
    assert index.column("keep").to_pylist() == [True, True, False]
    assert index.column("drop_reason").to_pylist() == [None, None, "duplicate"]


def test_subject_splits_are_disjoint_stratified_and_seeded():
    rng = np.random.default_rng(0)
    subjects, labels = [], []
    for s in range(40):
        for label in ("happy", "sad", "angry"):
            for _ in range(int(rng.integers(1, 4))):
                subjects.append(f"kdef:S{s:02d}")
                labels.append(label)
    n = len(labels)
    index = pa.table({"image_id": [f"id{i:03d}" for i in range(n)], "dataset": ["kdef"] * n,
                      "label": labels, "subject_id": subjects, "official_split": [None] * n,
                      "keep": [True] * n})
    first = assign_splits(index, SplitOptions(seed=1))
    again = assign_splits(index, SplitOptions(seed=1))
    other = assign_splits(index, SplitOptions(seed=2))
    assert first.equals(again) and not first.equals(other)
    by_subject = {}
    for subject, split in zip(subjects, first.column("split").to_pylist(), strict=True):
        by_subject.setdefault(subject, set()).add(split)
    assert all(len(v) == 1 for v in by_subject.values())
    shares = pd.Series(first.column("split").to_pylist()).value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.08 and abs(shares["test"] - 0.15) < 0.06
    for label in ("happy", "sad", "angry"):
        mine = [s for s, lab in zip(first.column("split").to_pylist(), labels, strict=True)
                if lab == label]
        assert abs(mine.count("train") / len(mine) - 0.7) < 0.12
    keys = face_rows(textures(n, seed=4), labels)
    report = check_leaks(first, build_index(keys, DedupOptions()).kept_pairs)
    assert report.subjects_across_splits == 0 and report.duplicate_pairs_across_splits == 0


def test_leak_check_finds_a_planted_cross_split_duplicate():
    a, b = textures(2, seed=9)
    rows = face_rows([a, b, np.fliplr(a)], ["happy", "sad", "happy"])
    split_table = pa.table({"image_id": ["id000", "id001", "id002"],
                            "dataset": ["fer2013"] * 3, "label": ["happy", "sad", "happy"],
                            "subject_id": [None, "x", "x"], "split": ["train", "test", "val"],
                            "split_rule": ["official"] * 3})
    found = duplicate_pairs(rows, DedupOptions())
    every = kept_pairs(rows.column("image_id").to_pylist(), found, np.ones(3, bool))
    report = check_leaks(split_table, every)
    assert report.duplicate_pairs_across_splits == 1
    assert report.subjects_across_splits == 1
    # the index keeps one of the two copies: no kept pair is left to cross splits
    index = build_index(rows, DedupOptions())
    keep = index.index.column("keep").to_pylist()
    assert keep[0] + keep[2] == 1 and index.kept_pairs.num_rows == 0
    assert check_leaks(split_table, index.kept_pairs).duplicate_pairs_across_splits == 0


def test_splits_refuses_kept_pairs_from_another_face_index_run(tmp_path):
    """face_index writes its kept pairs, then its index: a run killed between the two leaves
    new pairs beside the old index, and the leak check must not trust them."""
    from fer_data import storage
    from fer_data.artefacts import INDEX_RUN, kept_pairs_path, read_kept_pairs

    layout = storage.StorageLayout.from_env(str(tmp_path / "raw"), str(tmp_path / "storage"),
                                            str(tmp_path / "curated"))
    rows = face_rows(textures(2, seed=3), ["happy", "sad"])
    pairs = kept_pairs(rows.column("image_id").to_pylist(), duplicate_pairs(rows, DedupOptions()),
                       np.ones(2, bool))
    storage.write_table(pairs, kept_pairs_path(layout), {INDEX_RUN: "new"})

    def index_of(token: str) -> pa.Schema:
        return pa.schema([("image_id", pa.string())], metadata={INDEX_RUN: token})

    assert read_kept_pairs(layout, index_of("new")).num_rows == pairs.num_rows
    with pytest.raises(ValueError, match="materialize face_index again"):
        read_kept_pairs(layout, index_of("old"))


def gamma(image, g):
    return np.clip(255 * (image / 255.0) ** g, 0, 255).astype(np.uint8)


def test_copies_from_differently_processed_exports_are_found_from_the_source():
    """An equalized export and a flattened, gamma-changed one of the same picture, and the
    same source file cropped two different ways (two partitions' face policies): all found."""
    import cv2

    rng = np.random.default_rng(2)
    base = cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (0, 0), 3)
    other = cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (0, 0), 3)
    flat = np.clip(0.6 * (base - base.mean()) + base.mean(), 0, 255).astype(np.uint8)
    images = [cv2.equalizeHist(base), gamma(flat, 1.3), other, base[4:44, 4:44], base]
    sources = [images[0], images[1], other, base, base]
    crops = [im if im.shape == (48, 48) else cv2.resize(im, (48, 48)) for im in images]
    rows = face_rows(crops, ["sad"] * 5, sources=sources,
                     splits=["test", "train", "train", "train", "val"])
    result = build_index(rows, DedupOptions())
    cluster = result.index.column("cluster_id").to_pylist()
    assert cluster[0] == cluster[1] == cluster[3] == cluster[4] != cluster[2]
    assert result.pairs_by_key["exact"] == 1  # the two crops of one source file
    assert result.index.column("keep").to_pylist() == [True, False, True, False, False]
    assert result.index.column("duplicate_of").to_pylist()[1] == "id000"
    # the equalized hash is what joins the two exports; the crop hash alone would not
    alone = build_index(rows, DedupOptions(verify_neighbours=0)).pairs_by_key
    assert alone["source_phash_eq"] >= 1


def test_near_hashes_join_only_where_the_thumbnails_agree():
    """With hash_correlation, hashes within the threshold are not enough: two different
    pictures whose hashes collide (as some real FER2013 faces of different people do) stay
    apart unless their thumbnails agree; a re-encoded copy still joins through its hash, and so
    do two flat pictures. Without it (the default) the hashes alone decide."""
    import cv2

    a, b = smooth_faces(2, seed=31)
    copy = cv2.imdecode(cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 40])[1], 0)
    flat = [np.full((48, 48), v, np.uint8) for v in (90, 91)]
    rows = face_rows([a, b, copy, *flat], ["happy"] * 5)
    for column in (c for c in KEY_COLUMNS if "phash" in c):  # b's hashes collide with a's
        values = rows.column(column).to_pylist()
        rows = rows.set_column(rows.column_names.index(column), column,
                               pa.array([values[0], values[0], *values[2:]], pa.int64()))
    gated = DedupOptions(hash_correlation=0.8)
    assert correlation(thumbnails(rows), np.array([[0, 1]]))[0] < gated.hash_correlation
    cluster = build_index(rows, gated).index.column("cluster_id").to_pylist()
    assert cluster[0] == cluster[2] and cluster[3] == cluster[4]
    assert cluster[0] != cluster[1]
    hashes_alone = build_index(rows, DedupOptions()).index
    assert len(set(hashes_alone.column("cluster_id").to_pylist()[:3])) == 1


def test_second_tier_needs_the_thumbnails_to_agree():
    """Candidates a little beyond the hash radius join only when their equalized thumbnails
    correlate: the same picture does, a different face at the same distance does not."""
    from fer_data.dedup import correlation, thumbnails

    rows = face_rows(textures(40, seed=11), ["happy"] * 40)
    pairs = np.array([[i, j] for i in range(40) for j in range(i + 1, 40)])
    assert correlation(thumbnails(rows), pairs).max() < 0.95
    a = textures(1, seed=12)[0]
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    rows = face_rows([a, noisy], ["happy"] * 2)
    assert correlation(thumbnails(rows), np.array([[0, 1]]))[0] > 0.95
    found = build_index(rows, DedupOptions(threshold=0)).pairs_by_key
    assert found["verified"] == 1


def smooth_faces(n: int, seed: int) -> list[np.ndarray]:
    """Smooth random 48 px images: as different from each other as faces of two people."""
    import cv2

    rng = np.random.default_rng(seed)
    return [cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (0, 0), 2.5)
            for _ in range(n)]


def overlaid_copies(images: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Each image with a stock-photo watermark or CLAHE, as the repackage generator plants."""
    from fer_data.demo.repackage import process

    rng = np.random.default_rng(seed)
    return [process(im, rng, local_contrast=0.5, watermarked=0.5)[0] for im in images]


def test_robust_tier_joins_watermarked_and_local_contrast_copies_only():
    from fer_data.dedup import correlation, robust_correlation, thumbnails

    originals = smooth_faces(30, seed=5)
    copies = overlaid_copies(originals[:10], seed=6)
    rows = face_rows(originals + copies, ["happy"] * 40)
    thumbs = thumbnails(rows)
    own = np.array([[i, 30 + i] for i in range(10)])
    others = np.array([[i, j] for i in range(30) for j in range(i + 1, 30)])
    assert robust_correlation(thumbs, own).min() >= 0.97
    assert robust_correlation(thumbs, others).max() < 0.97
    plain = correlation(thumbs, own)
    assert plain.min() < 0.95  # some copy the plain check alone misses
    # the robust tier alone (the band tier would join some of the others)
    options = DedupOptions(threshold=0, eq_threshold=0, robust_radius=15, band_floor=1.01)
    result = build_index(rows, options)
    cluster = result.index.column("cluster_id").to_pylist()
    # joined exactly when the plain correlation clears the robust tier's floor
    assert [cluster[i] == cluster[30 + i] for i in range(10)] == \
        (plain >= options.robust_floor).tolist()
    assert len(set(cluster[:30])) == 30  # no two originals joined
    assert result.pairs_by_key["robust"] >= 1
    # under another label the same overlaid copy is left alone: in one framing, one person's
    # two expressions differ in a minority of pixels too
    relabelled = build_index(face_rows(originals + copies, ["happy"] * 30 + ["sad"] * 10),
                             options)
    assert relabelled.pairs_by_key["robust"] == 0
    off = build_index(rows, replace(options, robust_correlation=1.01))
    assert len(set(off.index.column("cluster_id").to_pylist())) > len(set(cluster))


def inked_copies(images: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Each image under one bold, nearly opaque line of watermark text at a random angle and
    height: more of the face changes than the robust correlation forgives."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        mask = np.zeros(im.shape, np.uint8)
        cv2.putText(mask, "depositphotos", (0, int(rng.integers(12, 32))),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.42, 255, 2, cv2.LINE_AA)
        turn = cv2.getRotationMatrix2D((24, 24), float(rng.uniform(-30, 30)), 1.0)
        alpha = 0.6 * cv2.warpAffine(mask, turn, (48, 48)) / 255.0
        out.append(np.clip(np.round((1 - alpha) * im + alpha * 255), 0, 255).astype(np.uint8))
    return out


def test_band_tier_joins_copies_under_an_opaque_line_of_text_only():
    from fer_data.dedup import band_correlation, robust_correlation, thumbnails

    originals = smooth_faces(30, seed=5)
    copies = inked_copies(originals[:10], seed=9)
    rows = face_rows(originals + copies, ["happy"] * 40)
    thumbs = thumbnails(rows)
    own = np.array([[i, 30 + i] for i in range(10)])
    others = np.array([[i, j] for i in range(30) for j in range(i + 1, 30)])
    missed = robust_correlation(thumbs, own) < 0.97
    assert missed.sum() >= 8  # the robust tier misses most of them
    assert band_correlation(thumbs, own, 10).min() >= 0.95
    assert band_correlation(thumbs, others, 10).max() < 0.95
    assert band_correlation(thumbs, own, 2).max() < 0.95  # a band thinner than the text
    # smooth random faces change more under the text than photographs: wider gates
    options = DedupOptions(threshold=0, eq_threshold=0, robust_radius=20, band_floor=0.4)
    result = build_index(rows, options)
    cluster = result.index.column("cluster_id").to_pylist()
    assert all(cluster[i] == cluster[30 + i] for i in range(10))
    assert len(set(cluster[:30])) == 30
    assert result.pairs_by_key["band"] >= missed.sum()
    relabelled = build_index(face_rows(originals + copies, ["happy"] * 30 + ["sad"] * 10),
                             options)
    assert relabelled.pairs_by_key["band"] == 0
    off = build_index(rows, replace(options, band_floor=1.01)).index
    assert len(set(off.column("cluster_id").to_pylist())) == 40


def test_real_watermarked_and_clahe_copies_join_their_origin_and_nothing_else(shared):
    """FER2013 faces and watermarked / CLAHE copies of some: the copies join their origin;
    what the robust tier joins among the originals themselves (FER2013 has watermarked repeats
    of its own) is the same picture by imagehash of the original files."""
    import imagehash
    from PIL import Image

    files = sorted((shared / "fer2013_images").rglob("*.jpg"))
    rng = np.random.default_rng(7)
    picked = [files[i] for i in rng.choice(len(files), 400, replace=False)]
    originals = [np.asarray(Image.open(f).convert("L")) for f in picked]
    copies = overlaid_copies(originals[:150], seed=8) + inked_copies(originals[150:200], seed=9)
    rows = face_rows(originals + copies, ["happy"] * 600)
    options = DedupOptions(threshold=0, eq_threshold=0)  # tier 2 only: what it joins
    cluster = build_index(rows, options).index.column("cluster_id").to_pylist()
    found = [cluster[i] == cluster[400 + i] for i in range(200)]
    assert all(found), [picked[i] for i in range(200) if not found[i]]
    # some of them only the robust tier joins
    plain = build_index(rows, replace(options, robust_correlation=1.01, band_floor=1.01)).index
    plain = plain.column("cluster_id").to_pylist()
    assert sum(plain[i] == plain[400 + i] for i in range(200)) < 200
    found = duplicate_pairs(rows.slice(0, 400), options)
    for a, b in np.concatenate([found["robust"], found["band"]]).tolist():
        distance = imagehash.phash(Image.open(picked[a])) - imagehash.phash(Image.open(picked[b]))
        assert distance <= 10, (picked[a], picked[b], distance)  # unrelated faces: ~32


def recropped_copies(images: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Each image shifted by 1-2 px (edges replicated) or re-cropped by 1-2 px per side and
    resized back, or both: a re-export that framed the face again."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        side = im.shape[0]
        kind = rng.integers(0, 3)
        if kind != 1:
            dx, dy = rng.choice([-2, -1, 1, 2], 2)
            im = cv2.warpAffine(im, np.float32([[1, 0, dx], [0, 1, dy]]), (side, side),
                                borderMode=cv2.BORDER_REPLICATE)
        if kind != 0:
            left, top, right, bottom = rng.integers(1, 3, 4)
            im = cv2.resize(im[top:side - bottom, left:side - right], (side, side),
                            interpolation=cv2.INTER_LINEAR)
        out.append(im)
    return out


def test_registration_aligns_a_shift_and_scale_within_its_bounds_only():
    """A sub-pixel shift and a re-scale correlate near 1 once aligned, a different image does
    not, and a shift beyond max_shift stays unaligned."""
    import cv2

    from fer_data.registration import registered_correlation

    faces = smooth_faces(12, seed=3)
    def warped(im, dx, dy, scale):
        matrix = cv2.getRotationMatrix2D((23.5, 23.5), 0, scale)
        matrix[:, 2] += (dx, dy)
        return cv2.warpAffine(im, matrix, (48, 48), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REPLICATE)

    def flat(images):
        return np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA)
                         for im in images]).reshape(len(images), -1).astype(np.float32)

    moved = [warped(im, 2.6 * np.cos(k), 2.6 * np.sin(k), 1 + 0.06 * (-1) ** k)
             for k, im in enumerate(faces)]
    far = [warped(im, 7, -7, 1.0) for im in faces]
    a = flat(faces)
    plain = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, flat(moved), strict=True)])
    aligned = registered_correlation(a, [flat(moved)], max_shift=3, max_scale=0.12, border=3)
    assert plain.max() < 0.9 and aligned.min() > 0.98
    others = registered_correlation(a, [np.roll(flat(moved), 1, axis=0)], 3, 0.12, 3)
    assert others.max() < 0.9
    assert registered_correlation(a, [flat(far)], 3, 0.12, 3).max() < 0.9


def test_shifted_correlation_finds_whole_pixel_shifts_within_its_bound():
    """The registered tier's ranking score: a copy moved by whole pixels (up to max_shift)
    scores as its interior correlates at the right shift (1 for an exact move), its mirror
    image through the mirrored alternative; other faces and moves past the bound stay low;
    with max_shift 0 it is the plain Pearson correlation of the interiors."""
    import cv2

    from fer_data.registration import shifted_correlation

    faces = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
                      for f in smooth_faces(12, 7)])
    flat = faces.reshape(len(faces), -1)
    moves = [(k % 7 - 3, (2 * k) % 7 - 3) for k in range(len(faces))]  # -3..3 each axis
    moved = np.stack([np.roll(f, m, axis=(0, 1)) for f, m in zip(faces, moves, strict=True)])
    plain = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(flat, moved.reshape(12, -1),
                                                              strict=True)])
    score = shifted_correlation(flat, [moved.reshape(12, -1)], max_shift=3, border=3)
    assert plain[[m != (0, 0) for m in moves]].max() < 0.97 and score.min() > 0.999
    mirror = moved[:, :, ::-1].reshape(12, -1)
    assert shifted_correlation(flat, [mirror], 3, 3).max() < 0.97
    # as dedup passes them: the partner, then its mirror image (here: the moved copy itself)
    assert shifted_correlation(flat, [mirror, moved.reshape(12, -1)], 3, 3).min() > 0.999
    assert shifted_correlation(flat, [np.roll(moved, 1, axis=0).reshape(12, -1)], 3, 3).max() \
        < 0.9
    far = np.stack([np.roll(f, (3, 6), axis=(0, 1)) for f in faces]).reshape(12, -1)
    assert shifted_correlation(flat, [far], 3, 3).max() < 0.97
    inner = faces[:, 3:29, 3:29].reshape(12, -1)
    other = np.roll(faces, 1, axis=0)
    expected = [np.corrcoef(x, y)[0, 1] for x, y in zip(inner, other[:, 3:29, 3:29]
                                                        .reshape(12, -1), strict=True)]
    assert np.allclose(shifted_correlation(flat, [other.reshape(12, -1)], 0, 3), expected,
                       atol=1e-4)


def test_registered_tier_joins_shifted_and_recropped_copies_only():
    from fer_data.dedup import correlation, thumbnails

    originals = smooth_faces(30, seed=5)
    copies = recropped_copies(originals[:10], seed=4)
    rows = face_rows(originals + copies, ["happy"] * 40)
    own = np.array([[i, 30 + i] for i in range(10)])
    assert (correlation(thumbnails(rows), own) < 0.95).sum() >= 8  # the plain check misses
    options = DedupOptions(threshold=0, eq_threshold=0, registered_correlation=0.96)
    result = build_index(rows, options)
    cluster = result.index.column("cluster_id").to_pylist()
    assert all(cluster[i] == cluster[30 + i] for i in range(10))
    assert len(set(cluster[:30])) == 30  # no two originals joined
    assert result.pairs_by_key["registered"] >= 1
    off = build_index(rows, replace(options, registered_correlation=1.01)).index
    off = off.column("cluster_id").to_pylist()
    assert sum(off[i] == off[30 + i] for i in range(10)) < 10  # some only it joins


def test_real_shifted_and_recropped_copies_join_their_origin_and_nothing_else(shared):
    """FER2013 faces under their own labels and shifted / re-cropped copies of some: every
    copy joins its origin, and what the registered tier joins among the originals (FER2013
    repeats photographs shifted and re-cropped) is the same picture by imagehash of the
    original files."""
    import imagehash
    from PIL import Image

    files = sorted((shared / "fer2013_images").rglob("*.jpg"))
    rng = np.random.default_rng(17)
    picked = [files[i] for i in rng.choice(len(files), 400, replace=False)]
    originals = [np.asarray(Image.open(f).convert("L")) for f in picked]
    labels = [f.parent.name for f in picked]
    copies = recropped_copies(originals[:150], seed=18)
    rows = face_rows(originals + copies, labels + labels[:150])
    # tier 2 only, the registered tier on: what it joins
    options = DedupOptions(threshold=0, eq_threshold=0, registered_correlation=0.96)
    cluster = build_index(rows, options).index.column("cluster_id").to_pylist()
    found = [cluster[i] == cluster[400 + i] for i in range(150)]
    assert all(found), [picked[i] for i in range(150) if not found[i]]
    off = build_index(rows, replace(options, registered_correlation=1.01)).index
    off = off.column("cluster_id").to_pylist()
    assert sum(off[i] == off[400 + i] for i in range(150)) < 120  # most need registering
    joined = duplicate_pairs(rows.slice(0, 400), options)["registered"]
    for a, b in joined.tolist():  # of the 79,800 pairs of these originals, 199 are within 16
        distance = imagehash.phash(Image.open(picked[a])) - imagehash.phash(Image.open(picked[b]))
        assert distance <= 16, (picked[a], picked[b], distance)  # unrelated faces: ~30


def test_quarter_hashes_see_each_quarter_alone_and_know_the_mirror_image():
    from fer_data.phash import hamming, quarter_hashes

    faces = np.stack(smooth_faces(40, seed=21)[:40])[:, 8:40, 8:40].copy()
    hashes, mirrored = quarter_hashes(faces)
    flipped, _ = quarter_hashes(np.ascontiguousarray(faces[:, :, ::-1]))
    assert (flipped == mirrored).all()
    banded = faces.copy()
    banded[:, 20:26, :] = 255  # a white band across the bottom half
    changed, _ = quarter_hashes(banded)
    assert (changed[:, :2] == hashes[:, :2]).all()  # the top quarters never see it
    assert (changed[:, 2:] != hashes[:, 2:]).any(axis=1).all()
    others = hamming(hashes[:, None, :], hashes[None, :, :])[~np.eye(40, dtype=bool)]
    assert others.min() > 8  # unrelated images: far apart in every quarter


def test_a_face_with_a_subject_is_kept_over_its_copy_without_one():
    """A CK+ frame copied into a folder set: the CK+ face stays (its subject decides its
    split), the folder set's copy goes, even from a more protected official split."""
    a = textures(1, seed=13)[0]
    rows = face_rows([a, a], ["happy", "happy"], datasets=["face_expression", "ckplus"],
                     subjects=[None, "ckplus:S010"], splits=["val", None])
    index = build_index(rows, DedupOptions()).index
    assert index.column("keep").to_pylist() == [False, True]
    from fer_data.dedup import drops_by_source

    assert drops_by_source(index) == {"face_expression": {"ckplus": 1}}


@pytest.fixture(scope="module")
def published(demo_pipeline):
    return demo_pipeline


def test_demo_pipeline_publishes_leak_free_splits(published):
    root, result = published
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    # the demo's smoke generator misses the realism floors (a warning; the fixture forces it)
    assert checks == {"no_duplicates_across_splits": True, "no_subjects_across_splits": True,
                      "realism_floors": False}
    real = {s: f[~f["is_synthetic"]] for s, f in
            ((s, pd.read_parquet(root / "curated" / "fer7" / f"{s}.parquet"))
             for s in ("train", "val", "test"))}
    folder = root / "curated" / "fer7"
    assert sorted(p.name for p in folder.iterdir()) == [
        "_SUCCESS", "class_balance.png", "dataset_card.md", "samples.png",
        "synthetic_report.json", "test.parquet", "train.parquet", "val.parquet"]
    frames = {s: pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "val", "test")}
    assert all(len(f) > 0 for f in frames.values())
    assert all((f["split"] == s).all() for s, f in frames.items())
    ids = [set(f["image_id"]) for f in frames.values()]
    assert not any(a & b for a, b in combinations(ids, 2))
    subjects = [set(f["subject_id"].dropna()) for f in frames.values()]
    assert not any(a & b for a, b in combinations(subjects, 2))
    index = pq.read_table(root / "storage" / "face_index" / "all.parquet")
    assert sum(len(f) for f in real.values()) == pa.compute.sum(index["keep"]).as_py() - sum(
        1 for label, keep in zip(index["label"].to_pylist(), index["keep"].to_pylist(),
                                 strict=True) if keep and label == "contempt")
    fer4 = pd.read_parquet(root / "curated" / "fer4_hnss" / "train.parquet")
    assert set(fer4["label_name"]) == {"happy", "neutral", "sad", "surprise"}
    card = (folder / "dataset_card.md").read_text()
    assert "| disgust |" in card and "jaffe" in card and "dropped" in card


def test_rafdb_expw_affectnet_published_with_their_labels_splits_and_boxes(published,
                                                                           demo_raw):
    root, _ = published
    rows = pd.concat(pd.read_parquet(root / "curated" / "fer7" / f"{s}.parquet")
                     for s in ("train", "val", "test"))
    rows = rows[~rows["is_synthetic"]]
    assert rows["bbox"].notna().all()
    # RAF-DB: label and split from the list file, read here on its own
    codes = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry",
             7: "neutral"}
    listing = dict(line.split() for line in (demo_raw / "rafdb/basic/EmoLabel/"
                                             "list_patition_label.txt").read_text().splitlines())
    rafdb = rows[rows["source_dataset"] == "rafdb"]
    index = pq.read_table(root / "storage" / "face_index" / "all.parquet").to_pandas()
    indexed = index[index["dataset"] == "rafdb"]
    assert len(indexed) == len(listing)  # every listed face indexed; published or dropped
    assert len(rafdb) == (indexed["drop_reason"].isna()).sum() >= 0.75 * len(listing)
    for path, label, split in zip(rafdb["source_path"], rafdb["label_name"], rafdb["split"],
                                  strict=True):
        name = path.split("/")[-1].replace("_aligned", "")
        assert (label, split) == (codes[int(listing[name])], name.split("_")[0])
    # AffectNet: validation.csv is the test split; valence and arousal published
    affectnet = rows[rows["source_dataset"] == "affectnet"]
    validation = (demo_raw / "affectnet/Manually_Annotated_file_lists/validation.csv"
                  ).read_text()
    assert len(affectnet) > 0
    for path, split in zip(affectnet["source_path"], affectnet["split"], strict=True):
        listed = path.removeprefix("Manually_Annotated_Images/") in validation
        assert split == ("test" if listed else "train")
    assert affectnet["valence"].notna().all() and rows["valence"].notna().sum() == len(affectnet)
    # ExpW: no official split, so stratified over all three; one row per labelled face
    expw = rows[rows["source_dataset"] == "expw"]
    assert set(expw["split"]) == {"train", "val", "test"}
    assert expw["source_path"].nunique() < len(expw)


def test_published_parquet_reads_in_pyarrow_duckdb_and_torch(published):
    root, _ = published
    folder = root / "curated" / "fer7"
    table = pq.read_table(folder / "train.parquet")
    assert table.schema.field("image").type == pa.struct([("bytes", pa.binary()),
                                                          ("path", pa.string())])
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["label"]["names"] == list(CLASS_SETS["fer7"])
    names = table.column("label_name").to_pylist()
    assert [CLASS_SETS["fer7"][i] for i in table.column("label").to_pylist()] == names
    counts = duckdb.sql(f"select label_name, count(*) n from '{folder}/train.parquet' "
                        "group by 1").fetchall()
    assert dict(counts) == pd.Series(names).value_counts().to_dict()

    data = CuratedFaces(folder, "train", transform=lambda im: torch.tensor(np.asarray(im)))
    loader = torch.utils.data.DataLoader(data, batch_size=32, num_workers=2, shuffle=False)
    seen = 0
    for images, labels in loader:
        assert images.shape[1:] == (48, 48) and images.dtype == torch.uint8
        seen += len(labels)
    assert seen == table.num_rows == len(data)
    assert data.classes == list(CLASS_SETS["fer7"])
    weights = data.class_weights()
    assert weights[CLASS_SETS["fer7"].index("disgust")] > weights[CLASS_SETS["fer7"].index(
        "happy")]


def test_hugging_face_datasets_loads_image_and_class_label(published, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, _ = published
    folder = root / "curated" / "fer7"
    loaded = datasets.load_dataset("parquet", data_files={
        s: str(folder / f"{s}.parquet") for s in ("train", "val", "test")},
        cache_dir=str(tmp_path / "hf"))
    features = loaded["train"].features
    assert isinstance(features["image"], datasets.Image)
    assert isinstance(features["label"], datasets.ClassLabel)
    assert features["label"].names == list(CLASS_SETS["fer7"])
    assert loaded["train"][0]["image"].size == (48, 48)


def test_publish_replaces_atomically_and_crash_leaves_the_old_dataset(tmp_path, monkeypatch):
    a, b = textures(2)
    rows = pa.table({"image_id": ["x", "y"], "dataset": ["fer2013"] * 2,
                     "source_path": ["train/happy/x.jpg", "test/sad/y.jpg"],
                     "label": ["happy", "sad"], "subject_id": [None, None],
                     "split": ["train", "test"], "face": [encode_png(a), encode_png(b)]})
    first = publish(rows, tmp_path, PublishOptions(), {})
    assert pq.read_table(first.folder / "train.parquet").num_rows == 1

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("fer_data.publish.dataset_card", boom)
    with pytest.raises(RuntimeError):
        publish(rows.slice(0, 1), tmp_path, PublishOptions(), {})
    assert pq.read_table(tmp_path / "fer7" / "test.parquet").num_rows == 1  # old one intact
    # the published link and the version it points to, no staging left
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        sorted(["fer7", os.readlink(tmp_path / "fer7")])
    with pytest.raises(FileNotFoundError, match="_SUCCESS"):
        (tmp_path / "fer7" / "_SUCCESS").unlink()
        CuratedFaces(tmp_path / "fer7", "train")


def text_on_blank(n: int, seed: int) -> list[np.ndarray]:
    """A line of text (any angle up to 30 degrees, any height) on a uniform dark or light
    picture, JPEG-encoded: FER2013's placeholders, or a watermark over one of its blank
    pictures."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ground = int(rng.choice([rng.integers(0, 60), rng.integers(196, 256)]))
        im = np.full((48, 48), ground, np.uint8)
        cv2.putText(im, str(rng.choice(["depositphotos", "moved or", "123RF"])),
                    (0, int(rng.integers(14, 34))), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    255 - ground, 1, cv2.LINE_AA)
        im = cv2.warpAffine(im, cv2.getRotationMatrix2D((24, 24), float(rng.uniform(-30, 30)),
                                                        1.0), (48, 48),
                            borderMode=cv2.BORDER_REPLICATE)
        ok, jpeg = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 95))])
        out.append(cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE))
    return out


def test_a_line_of_text_on_a_blank_picture_is_low_information_and_a_face_under_it_is_not(
        shared):
    from PIL import Image

    from fer_data.dedup import pixel_std

    blank = text_on_blank(40, seed=3)
    files = sorted((shared / "fer2013_images").rglob("*.jpg"))
    rng = np.random.default_rng(21)
    faces = [np.asarray(Image.open(files[i]).convert("L"))
             for i in rng.choice(len(files), 200, replace=False)]
    faces = [f for f in faces if f.std() >= 4]  # FER2013's blank pictures are not faces
    inked = inked_copies(faces, seed=4)
    assert min(float(b.std()) for b in blank) > 8  # the whole picture is far from uniform
    assert pixel_std(blank).max() < DedupOptions().min_std
    assert pixel_std(faces).min() > 4 * DedupOptions().min_std
    assert pixel_std(inked).min() > 4 * DedupOptions().min_std
    rows = build_index(face_rows(blank + inked[:10], ["happy"] * 50),
                       DedupOptions()).index.to_pylist()
    assert [r["drop_reason"] for r in rows[:40]] == ["low_information"] * 40
    assert all(r["drop_reason"] != "low_information" for r in rows[40:])
