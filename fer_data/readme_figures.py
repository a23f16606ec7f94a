"""The figures in assets/ (the README's): `make figures` after `make run` regenerates them,
`make figures FIGURES_FROM=/tmp/fer-real` from the real-data benches' run instead.

    python -m fer_data.readme_figures [assets] [--work FOLDER]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fer_data import storage
from fer_data.artefacts import published_dir
from fer_data.augment import read_model_record
from fer_data.definitions import defs
from fer_data.figures import figure_png, pyplot
from fer_data.samples import sample_sheet

GROUP_COLOURS = {"ingest": "#c6dbef", "faces": "#c7e9c0", "dedup": "#fdd0a2",
                 "splits": "#fdae6b", "evaluate": "#dadaeb", "augment": "#fcbba1",
                 "publish": "#d9d9d9"}


def asset_graph_png(assets_defs) -> bytes:
    """The asset graph, one column per depth, boxes coloured by group."""
    deps, groups = {}, {}
    for a in assets_defs:
        for key in a.keys:
            name = key.to_user_string()
            deps[name] = sorted(k.to_user_string() for k in a.asset_deps[key])
            groups[name] = a.group_names_by_key[key]
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((level(d) for d in deps[name] if d in deps), default=-1)
        return depth[name]

    columns: dict[int, list[str]] = {}
    for name in sorted(deps, key=lambda n: (level(n), n)):
        columns.setdefault(depth[name], []).append(name)
    where = {n: (x, -y) for x, names in columns.items() for y, n in enumerate(names)}
    fig, ax = pyplot().subplots(figsize=(2.2 * len(columns), 0.9 + 0.8 * max(
        len(v) for v in columns.values())), dpi=110)
    for name, targets in deps.items():
        for d in targets:
            if d in where:
                ax.annotate("", where[name], where[d], arrowprops={
                    "arrowstyle": "->", "color": "#555555", "shrinkA": 38, "shrinkB": 38})
    for name, (x, y) in where.items():
        ax.text(x, y, name, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": GROUP_COLOURS.get(groups[name], "white")})
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylim(-max(len(v) for v in columns.values()) + 0.4, 0.6)
    ax.axis("off")
    ax.set_title("fer-data assets (colour = group: " + ", ".join(GROUP_COLOURS) + ")",
                 fontsize=8)
    return figure_png(fig)


def readme_figures(out_dir, work=None, class_set: str = "fer7") -> list[str]:
    """Write assets/asset_graph.png, and copy the class balance, StarGAN translation grid and
    judge hit-rate curve of a finished run (with a sheet of 32 of its synthetic faces): the
    last `make run`, or the pipeline run whose storage/ and curated/ lie in `work` (as the
    real-data benches leave them)."""
    out_dir = Path(out_dir)
    layout = storage.StorageLayout.from_env(
        storage_dir=str(Path(work) / "storage") if work else None,
        curated_dir=str(Path(work) / "curated") if work else None)
    written = [str(storage.atomic_write_bytes(out_dir / "asset_graph.png",
                                              asset_graph_png(defs().assets)))]
    copies = {"class_balance.png": Path(str(published_dir(layout, class_set))) /
              "class_balance.png"}
    try:
        folder = Path(read_model_record(layout)["checkpoint"]).parent
        copies["translation_grid.png"] = folder / "translation_grid.png"
        copies["judge_hit_rate.png"] = folder / "judge_hit_rate.png"
        png, _ = sample_sheet(layout, 32, seed=0)
        written.append(str(storage.atomic_write_bytes(out_dir / "synthetic_samples.png", png)))
    except FileNotFoundError as missing:
        print(f"skipped the StarGAN figures: {missing}")
    for name, source in copies.items():
        if source.exists():
            written.append(str(storage.atomic_write_bytes(out_dir / name, source.read_bytes())))
        else:
            print(f"skipped {name}: {source} does not exist (run the pipeline first)")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="assets")
    parser.add_argument("--work", help="a folder with the storage/ and curated/ of a run "
                        "(default: the last `make run`)")
    args = parser.parse_args(argv)
    for path in readme_figures(args.out, args.work):
        print("wrote", path)


if __name__ == "__main__":
    main()
