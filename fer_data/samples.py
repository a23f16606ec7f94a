"""Contact sheet of random synthetic faces beside the faces they were made from.

    python -m fer_data.samples [-n 32] [--seed 0] [--out curated/synthetic_samples.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fer_data import storage
from fer_data.artefacts import load_face_crops
from fer_data.images import decode_png
from fer_data.storage import StorageLayout
from fer_data.synthesis import sample_pairs_png


def sample_sheet(layout: StorageLayout, n: int, seed: int) -> tuple[bytes, int]:
    """PNG bytes of n (source, synthetic) pairs, and how many synthetic faces exist."""
    path = layout.table("synthetic_faces", storage.ALL)
    if not path.exists():
        raise FileNotFoundError(f"no synthetic faces at {path}: run `make run` first")
    synthetic = storage.read_table(path, columns=["face", "source_image_id"])
    faces, _ = load_face_crops(layout, ["image_id", "face"])
    by_id = dict(zip(faces["image_id"].to_pylist(), faces["face"].to_pylist(), strict=True))
    pairs = [(decode_png(by_id[s]), decode_png(f)) for s, f in
             zip(synthetic["source_image_id"].to_pylist(), synthetic["face"].to_pylist(),
                 strict=True) if s in by_id]
    return sample_pairs_png(pairs, n, seed), len(pairs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=32, help="pairs to show")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    layout = StorageLayout.from_env()
    png, total = sample_sheet(layout, args.n, args.seed)
    out = args.out or Path(str(layout.curated_dir)) / "synthetic_samples.png"
    storage.atomic_write_bytes(out, png)
    print(f"wrote {min(args.n, total)} of {total} synthetic faces (each after its source) to {out}")


if __name__ == "__main__":
    main()
