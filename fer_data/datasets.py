"""The dataset registry: one entry per dataset partition, holding everything the pipeline needs
to know about it. Adding a dataset = its reader module(s), a demo writer, and one entry here.

    python -m fer_data.datasets                      # list the datasets and their layouts
    python -m fer_data.datasets demo raw/ [--if-empty]  # write the built-in demo data
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fer_data import demo
from fer_data.readers import (
    JAFFE,
    KDEF,
    AffectNetCsvReader,
    AffectNetNpyReader,
    CkPlusReader,
    ExpwReader,
    Fer2013CsvReader,
    FolderReader,
    RafdbReader,
    RavdessReader,
    Reader,
    parse_ckplus_name,
)

DETECT = ("mtcnn", "haar")  # photographs and video frames: MTCNN, Haar where it finds nothing
PRECROPPED = ("none",)  # already face crops: passed through
FACE_POLICIES = {"none", "mtcnn", "haar"}


@dataclass(frozen=True)
class Dataset:
    name: str  # the partition key and the folder under raw/
    readers: tuple[Reader, ...]  # the original layouts it may arrive in, tried in order
    face_policy: tuple[str, ...]  # detectors to try in order, or ("none",): already crops
    keeper_rank: int  # de-duplication keeps a cluster's copy from the lowest rank
    source: str  # where it comes from: the "dataset missing" message and the dataset card
    demo: demo.DemoWriter  # writes the built-in demo copy in this layout

    def __post_init__(self) -> None:
        problems = []
        if not self.name.isidentifier():
            problems.append("name must be a plain identifier (it is a partition key)")
        if not self.readers:
            problems.append("no reader")
        if not self.face_policy or not set(self.face_policy) <= FACE_POLICIES or (
                "none" in self.face_policy and len(self.face_policy) > 1):
            problems.append(f"face_policy {self.face_policy!r}: ('none',) or detectors from "
                            f"{sorted(FACE_POLICIES - {'none'})}")
        if not self.source.strip():
            problems.append("no source")
        if not callable(self.demo):
            problems.append("no demo writer")
        if problems:
            raise ValueError(f"dataset entry {self.name!r}: " + "; ".join(problems))


REGISTRY: tuple[Dataset, ...] = (
    Dataset("fer2013", (Fer2013CsvReader(), FolderReader(name="fer2013_folders")), PRECROPPED,
            keeper_rank=0, demo=demo.fer2013, source=(
                "FER2013 (Goodfellow et al., ICML 2013 challenge): kaggle.com/datasets/"
                "deadskull7/fer2013 (fer2013.csv) or kaggle.com/datasets/msambare/fer2013 "
                "(image folders); FER+ votes from github.com/microsoft/FERPlus. Research use.")),
    # a repackage of FER2013: its copies lose to FER2013's in de-duplication (rank last)
    Dataset("face_expression", (FolderReader(),), PRECROPPED, keeper_rank=8,
            demo=demo.face_expression, source=(
                "Kaggle 'Face expression recognition dataset' (jonathanoheix) or any "
                "<split>/<class>/ folder set. Licence varies by uploader; it repackages "
                "FER2013.")),
    Dataset("ckplus", (CkPlusReader(), FolderReader(name="ckplus48",
                                                    parse_name=parse_ckplus_name)),
            DETECT, keeper_rank=1, demo=demo.ckplus, source=(
                "Extended Cohn-Kanade (CK+), Lucey et al. 2010: request from the University of "
                "Pittsburgh (jeffcohn.net); CK+48 is a common Kaggle export. Non-commercial "
                "research only.")),
    Dataset("kdef", (KDEF,), DETECT, keeper_rank=2, demo=demo.kdef, source=(
        "Karolinska Directed Emotional Faces, Lundqvist et al. 1998: kdef.se. Non-commercial "
        "research; some images may not be published.")),
    Dataset("jaffe", (JAFFE,), DETECT, keeper_rank=3, demo=demo.jaffe, source=(
        "Japanese Female Facial Expression, Lyons et al. 1998: zenodo.org/record/3451524. "
        "Non-commercial research; agreement required.")),
    Dataset("ravdess", (RavdessReader(),), DETECT, keeper_rank=4, demo=demo.ravdess, source=(
        "RAVDESS, Livingstone & Russo 2018: zenodo.org/record/1188976 "
        "(Video_Speech_Actor_XX.zip, Video_Song_Actor_XX.zip). CC BY-NC-SA 4.0.")),
    # the in-the-wild sets give their faces (aligned crops or boxes): the detectors only see
    # a RAF-DB photograph that comes without its box file
    Dataset("rafdb", (RafdbReader(),), DETECT, keeper_rank=5, demo=demo.rafdb, source=(
        "RAF-DB (Real-world Affective Faces), Li et al. CVPR 2017: request from "
        "whdeng.cn/RAF/model1.html (basic and compound sets). Non-commercial research only.")),
    Dataset("affectnet", (AffectNetCsvReader(), AffectNetNpyReader()), DETECT, keeper_rank=6,
            demo=demo.affectnet, source=(
                "AffectNet, Mollahosseini et al. 2017: request from mohammadmahoor.com/"
                "affectnet (Manually_Annotated_Images + file lists, or the train_set/val_set "
                "release). Non-commercial research only.")),
    Dataset("expw", (ExpwReader(),), DETECT, keeper_rank=7, demo=demo.expw, source=(
        "ExpW (Expression in-the-Wild), Zhang et al. IJCV 2018: mmlab.ie.cuhk.edu.hk/projects/"
        "socialrelation/index.html (origin images + label.lst). Non-commercial research.")),
)


def check_registry(registry: Sequence[Dataset]) -> None:
    """Names and keeper ranks unique: a clear error instead of a silent tie."""
    names = [d.name for d in registry]
    ranks = [d.keeper_rank for d in registry]
    if len(set(names)) != len(names):
        raise ValueError(f"dataset names repeat in the registry: {names}")
    if len(set(ranks)) != len(ranks):
        raise ValueError("keeper ranks repeat in the registry: "
                         f"{dict(zip(names, ranks, strict=True))}")


check_registry(REGISTRY)
# the Dagster partitions (fixed when the definitions load); every function below reads REGISTRY
# when called
DATASETS: tuple[str, ...] = tuple(d.name for d in REGISTRY)


def entry(name: str) -> Dataset:
    for dataset in REGISTRY:
        if dataset.name == name:
            return dataset
    raise KeyError(f"unknown dataset {name!r}; the registry holds "
                   f"{', '.join(d.name for d in REGISTRY)}")


def face_policies() -> dict[str, list[str]]:
    """Per dataset, the detectors to try in order (face_crops' default policy)."""
    return {d.name: list(d.face_policy) for d in REGISTRY}


def keeper_priority() -> tuple[str, ...]:
    """Datasets in the order de-duplication prefers to keep their copy of a cluster."""
    return tuple(d.name for d in sorted(REGISTRY, key=lambda d: d.keeper_rank))


def write_demo(raw_dir: str | Path, spec: demo.DemoSpec | None = None) -> dict[str, int]:
    """The built-in demo data of every dataset in spec.datasets (default: all) under
    raw_dir/<dataset>/; files written per dataset."""
    return demo.write_demo(raw_dir, {d.name: d.demo for d in REGISTRY}, spec or demo.DemoSpec())


def raw_has_data(raw_dir: Path) -> bool:
    """True when any dataset folder under raw_dir holds a file."""
    return any(any(p.is_file() for p in (raw_dir / d.name).rglob("*")) for d in REGISTRY
               if (raw_dir / d.name).is_dir())


def describe() -> str:
    lines = []
    for d in REGISTRY:
        layouts = " or ".join(r.layout for r in d.readers)
        lines += [f"{d.name}: {layouts}", f"    faces: {' -> '.join(d.face_policy)}; "
                  f"keeper rank {d.keeper_rank}", f"    source: {d.source}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None, echo: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    write = sub.add_parser("demo", help="write the built-in demo data (synthetic faces)")
    write.add_argument("raw_dir", type=Path)
    write.add_argument("--seed", type=int, default=0)
    write.add_argument("--if-empty", action="store_true",
                       help="only write when raw_dir holds no dataset yet")
    args = parser.parse_args(argv)
    if args.command != "demo":
        echo(describe())
        return
    if args.if_empty and raw_has_data(args.raw_dir):
        echo(f"{args.raw_dir} already holds data: using it (no demo data written)")
        return
    counts = write_demo(args.raw_dir, demo.DemoSpec(seed=args.seed))
    echo(f"raw/ held no dataset: wrote built-in DEMO data (synthetic drawn faces) to "
         f"{args.raw_dir}: " + ", ".join(f"{k} {v} files" for k, v in counts.items()))


if __name__ == "__main__":
    main()
