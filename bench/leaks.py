"""Leak-free splits on real data, judged from the original files.

    .venv/bin/python bench/leaks.py [--shared ../shared/datasets] [--fer-count 0]
                                    [--local-contrast 0.1] [--watermark 0.1] [--keep DIR]

raw/ = the real FER2013 image export + CK+48 + a Kaggle-style repackage of both made by
fer_data.demo.repackage (every planted copy listed in its manifest). The pipeline runs
ingest -> faces -> face_index -> splits -> curated_dataset through Dagster, then:
- planted copies found (in their origin's cluster), by processing;
- training rows with a val/test twin within 2 and 4 pHash bits, by imagehash of the ORIGINAL files
  (as stored or histogram-equalized; fer_data.audit), for the pipeline's index and, side by side,
  for a baseline index that only has the stored-pixel pHash (as the crop hash was before);
- pairs each key found and a false-positive estimate: the correlation of the full 48x48 equalized
  images of every pair only the equalized hash or a tier-2 key (verified, robust, band) found;
  the least similar of them are drawn to bench/out/dedup_pairs.png for a look, and a random
  sample of the robust tier's own pairs to bench/out/robust_pairs.png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import DagsterInstance

from fer_data.audit import cross_split_twins, published_rows
from fer_data.datasets import keeper_priority
from fer_data.dedup import (
    HASH_KINDS,
    THUMB_SIDE,
    TIER2_KEYS,
    DedupOptions,
    build_index,
    correlation,
    duplicate_pairs,
    robust_correlation,
    thumbnails,
)
from fer_data.defs.resources import StorageResource
from fer_data.demo.repackage import RepackageSpec, repackage
from fer_data.images import decode_png, encode_png
from fer_data.phash import hamming, quarter_hashes
from fer_data.previews import contact_sheet
from fer_data.run import materialize_assets
from fer_data.splits import SplitOptions, assign_splits

REPO = Path(__file__).resolve().parents[1]


def build_raw(shared: Path, work: Path, spec: RepackageSpec) -> tuple[Path, pd.DataFrame]:
    raw = work / "raw"
    raw.mkdir()
    (raw / "fer2013").symlink_to(shared / "fer2013_images")
    (raw / "ckplus").mkdir()
    (raw / "ckplus" / "CK+48").symlink_to(shared / "ckplus48")
    manifest = repackage(shared / "fer2013_images", shared / "ckplus48", work / "made", spec)
    (raw / "face_expression").symlink_to(work / "made" / "face_expression")
    planted = pd.read_csv(manifest)
    prefix = planted["origin_dataset"].map({"fer2013": "", "ckplus": "CK+48/"})
    planted["origin_path"] = prefix + planted["origin_path"]
    return raw, planted


def run(raw: Path, work: Path) -> dict[str, float]:
    storage = StorageResource(raw_dir=str(raw), storage_dir=str(work / "storage"),
                              curated_dir=str(work / "curated"))
    instance = DagsterInstance.ephemeral()
    seconds = {}
    for dataset in ("fer2013", "ckplus", "face_expression"):
        start = time.perf_counter()
        assert materialize_assets(["raw_images", "face_crops"], dataset, storage=storage,
                                  instance=instance).success
        seconds[f"ingest + faces [{dataset}]"] = time.perf_counter() - start
    for asset in ("face_index", "splits", "curated_dataset"):
        start = time.perf_counter()
        assert materialize_assets([asset], storage=storage, instance=instance).success
        seconds[asset] = time.perf_counter() - start
    return seconds


def faces_table(storage: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(storage / "face_crops" / f"{d}.parquet")
                             for d in ("fer2013", "ckplus", "face_expression")])


def by_source(index: pd.DataFrame, column: str) -> dict[tuple[str, str], object]:
    """(dataset, source_path) -> the index's `column` for that face."""
    return dict(zip(zip(index["dataset"], index["source_path"], strict=True), index[column],
                    strict=True))


def copies_and_origins(planted: pd.DataFrame) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """(copy, origin) of each planted copy, each as (dataset, source_path)."""
    return [(("face_expression", c), (d, p)) for c, d, p in zip(
        planted["copy"], planted["origin_dataset"], planted["origin_path"], strict=True)]


def rejected_with_origin(index: pd.DataFrame, planted: pd.DataFrame) -> list[bool]:
    """Whether each planted copy is a low_information reject, as its origin is."""
    reason = by_source(index, "drop_reason")
    return [reason[copy] == reason[origin] == "low_information"
            for copy, origin in copies_and_origins(planted)]


def planted_found(index: pd.DataFrame, planted: pd.DataFrame,
                  by_kind: bool = True) -> pd.Series:
    """Whether each planted copy is in its origin's cluster, or a low_information reject as
    its origin is (an overlay on a blank picture: neither is published); by_kind: counted per
    processing."""
    cluster = by_source(index, "cluster_id")
    found = [cluster[copy] == cluster[origin] or rejected
             for (copy, origin), rejected in zip(copies_and_origins(planted),
                                                 rejected_with_origin(index, planted),
                                                 strict=True)]
    if not by_kind:
        return pd.Series(found)
    kind = planted["processing"].str.split(",").str[0].str.split(" ").str[0]
    return pd.Series(found).groupby(kind.to_numpy()).agg(["sum", "count"])


def missed_copies(faces: pa.Table, index: pd.DataFrame, planted: pd.DataFrame,
                  out: Path) -> list[str]:
    """Why each planted copy outside its origin's cluster was missed: its equalized pHash and
    best quarter hash distance (candidates), thumbnail correlation plain and robust
    (verification), labels; the pairs drawn side by side (as stored) to `out`."""
    found = planted_found(index, planted, by_kind=False)
    missed = planted[~found.to_numpy()]
    row = {key: i for i, key in enumerate(zip(faces["dataset"].to_pylist(),
                                              faces["source_path"].to_pylist(), strict=True))}
    pairs = np.array([[row[origin], row[copy]] for copy, origin in copies_and_origins(missed)],
                     dtype=np.int64).reshape(-1, 2)
    if not len(pairs):
        return ["missed planted copies: none"]
    thumbs = thumbnails(faces)
    eq = faces.column("source_phash_eq").to_numpy()
    eq_m = faces.column("source_phash_eq_mirror").to_numpy()
    quarters, mirrored = quarter_hashes(thumbs.pixels.reshape(-1, THUMB_SIDE, THUMB_SIDE))
    labels = faces.column("label").to_pylist()
    plain, robust = correlation(thumbs, pairs), robust_correlation(thumbs, pairs)
    dropped = by_source(index, "drop_reason")
    blank = [dropped[(d, p)] == "low_information" for d, p in zip(
        missed["origin_dataset"], missed["origin_path"], strict=True)]
    lines = [f"missed planted copies: {len(missed)}, {sum(blank)} of them of a blank origin "
             "(dropped as low_information, so the copy is the overlay alone); origin -> copy: "
             "eq pHash bits (mirror), best quarter bits (mirror), thumbnail correlation "
             "plain / robust, labels"]
    tiles = []
    for k, ((a, b), processing) in enumerate(zip(pairs, missed["processing"], strict=True)):
        lines.append(
            f"  {processing}{' (blank origin)' if blank[k] else ''}: "
            f"eq {int(hamming(eq[a], eq[b]))} ({int(hamming(eq[a], eq_m[b]))}),"
            f" quarter {int(hamming(quarters[a], quarters[b]).min())} "
            f"({int(hamming(quarters[a], mirrored[b]).min())}), corr {plain[k]:.3f} / "
            f"{robust[k]:.3f}, labels {labels[a]} / {labels[b]}")
        tiles += [thumbs.pixels[a].reshape(THUMB_SIDE, THUMB_SIDE),
                  thumbs.pixels[b].reshape(THUMB_SIDE, THUMB_SIDE)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_png(contact_sheet(tiles, columns=8, cell=THUMB_SIDE)))
    lines.append(f"  their thumbnails, origin beside copy: {out}")
    return lines


def twins(files: list[Path], split: np.ndarray) -> tuple[int, int, int]:
    """Within 2 bits, within 4 bits, within 4 bits with mirrored copies too."""
    plain = cross_split_twins(files, split)
    return plain[2], plain[4], cross_split_twins(files, split, (4,), mirrors=True)[4]


def baseline_twins(faces: pa.Table, raw: Path) -> tuple[int, int, int]:
    """Ground-truth twins of the rows a stored-pixel-pHash-only index would publish."""
    only = faces
    for suffix in ("", "_mirror"):
        only = only.set_column(only.schema.get_field_index(f"source_phash_eq{suffix}"),
                               f"source_phash_eq{suffix}", faces.column(f"source_phash{suffix}"))
    return index_twins(only, DedupOptions(verify_neighbours=0, dataset_priority=keeper_priority()),
                       raw)


def index_twins(faces: pa.Table, options: DedupOptions, raw: Path) -> tuple[int, int, int]:
    """Ground-truth twins of the rows an index built with `options` would publish."""
    index = build_index(faces, options).index
    table = assign_splits(index, SplitOptions())
    rows = table.join(index.select(["image_id", "source_path"]), "image_id").to_pandas()
    rows = rows[rows["label"] != "contempt"]
    files = [raw / d / p for d, p in zip(rows["dataset"], rows["source_path"], strict=True)]
    return twins(files, rows["split"].to_numpy())


def false_positive_estimate(faces: pa.Table, out: Path) -> list[str]:
    """Correlation of the full equalized faces for pairs that only the equalized hash or a tier-2
    key found (the stored hashes and the digest did not)."""
    import cv2

    found = duplicate_pairs(faces, DedupOptions())
    plain = {tuple(p) for k in ("exact", "phash", "source_phash") for p in found[k].tolist()}
    lines = [f"pairs by key: {({k: len(v) for k, v in found.items()})}"]
    images = [cv2.equalizeHist(decode_png(b)) for b in faces.column("face").to_pylist()]
    z = np.stack([(im - im.mean()) / (im.std() + 1e-6) for im in images]).reshape(len(images), -1)
    worst = []
    for key in ("source_phash_eq", *TIER2_KEYS):
        extra = np.array([p for p in found[key].tolist() if tuple(p) not in plain], np.int64)
        if not len(extra):
            lines.append(f"{key}: no pair beyond the stored hashes")
            continue
        a, b = extra[:, 0], extra[:, 1]
        mirrored = z[b].reshape(-1, 48, 48)[:, :, ::-1].reshape(len(b), -1)
        ncc = np.maximum((z[a] * z[b]).mean(1), (z[a] * mirrored).mean(1))
        lines.append(f"{key}: {len(extra):,} pairs only it found; full-face correlation "
                     f"median {np.median(ncc):.3f}, below 0.8: {(ncc < 0.8).sum()}, below 0.5: "
                     f"{(ncc < 0.5).sum()}")
        worst += [(ncc[i], a[i], b[i]) for i in np.argsort(ncc)[:8]]
    tiles = [images[i] for _, a, b in sorted(worst) for i in (a, b)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_png(contact_sheet(tiles, columns=8, cell=64)))
    lines.append(f"least similar accepted pairs (equalized, side by side): {out}")
    robust = found.get("robust", np.zeros((0, 2), np.int64))
    if len(robust):
        sample = robust[np.random.default_rng(0).choice(len(robust), min(32, len(robust)),
                                                         replace=False)]
        raw = [decode_png(b) for b in faces.column("face").take(pa.array(sample.ravel()))
               .to_pylist()]
        sheet = out.with_name("robust_pairs.png")
        sheet.write_bytes(encode_png(contact_sheet(raw, columns=8, cell=64)))
        lines.append(f"a random sample of the robust tier's pairs (as stored): {sheet}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--fer-count", type=int, default=0, help="0 = all 35,887")
    parser.add_argument("--ckplus-count", type=int, default=120)
    parser.add_argument("--local-contrast", type=float, default=0.0,
                        help="share of copies given CLAHE (the hard case)")
    parser.add_argument("--watermark", type=float, default=0.0,
                        help="share of copies given a stock-photo watermark")
    parser.add_argument("--keep", type=Path,
                        help="an empty folder to build in and keep (a temporary one otherwise)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="fer-leaks-") as tmp:
        work = args.keep or Path(tmp)
        spec = RepackageSpec(args.fer_count, args.ckplus_count,
                             local_contrast=args.local_contrast, watermark=args.watermark)
        raw, planted = build_raw(args.shared.resolve(), work, spec)
        print(f"repackage: {len(planted):,} planted copies "
              f"({dict(Counter(planted['origin_dataset']))})")
        for name, s in run(raw, work).items():
            print(f"  {name}: {s:.1f} s")
        index = pq.read_table(work / "storage" / "face_index" / "all.parquet").to_pandas()
        meta = pq.read_schema(work / "storage" / "face_index" / "all.parquet")
        print(f"face_index: {len(index):,} faces, kept {int(index['keep'].sum()):,}; "
              f"dropped {dict(Counter(index['drop_reason'].dropna()))}; key columns "
              f"{list(HASH_KINDS)} ({meta.metadata[b'fer_data.dedup'].decode()})")
        print("planted copies found, by processing:")
        print(planted_found(index, planted).to_string())
        print("  of them rejected as low_information with their origin (neither published): "
              f"{sum(rejected_with_origin(index, planted))}")
        rows = published_rows(work / "curated" / "fer7", raw)
        print(f"published fer7: {len(rows):,} real rows "
              f"{rows['split'].value_counts().to_dict()}")
        ours = twins(list(rows["file"]), rows["split"].to_numpy())
        faces = faces_table(work / "storage")
        for line in missed_copies(faces, index, planted, REPO / "bench" / "out" /
                                  "missed_copies.png"):
            print(line)
        base = baseline_twins(faces, raw)
        before = index_twins(faces, DedupOptions(robust_correlation=1.01, band_floor=1.01,
                                                 dataset_priority=keeper_priority()), raw)
        robust_only = index_twins(faces, DedupOptions(band_floor=1.01,
                                                      dataset_priority=keeper_priority()), raw)
        print("training rows with a val/test twin (imagehash of the original files, stored or "
              "equalized):")
        print("| index | within 2 bits | within 4 bits | within 4, mirrors too |")
        print("|---|---:|---:|---:|")
        for name, t in (("stored-pixel pHash only (baseline)", base),
                        ("digest, crop + stored + equalized pHash, verified tier (before)",
                         before),
                        ("the same + the robust tier", robust_only),
                        ("face_index: the same + the robust and band tiers", ours)):
            print(f"| {name} | " + " | ".join(f"{v:,}" for v in t) + " |")
        for line in false_positive_estimate(faces, REPO / "bench" / "out" / "dedup_pairs.png"):
            print(line)


if __name__ == "__main__":
    main()
