"""Datasets whose labels and subjects are spelled in the file name: KDEF and JAFFE."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from fer_data.labels import JAFFE_CODES, KDEF_CODES
from fer_data.readers.base import (
    FileSpec,
    ReadOptions,
    Record,
    Reject,
    Scan,
    decode_specs,
    is_ignored,
    is_image,
    relpath,
    walk_files,
)

# KDEF: session A/B, gender F/M, id 01-35, expression, angle (S, HL, HR, FL, FR): AF01ANS.JPG
KDEF_NAME = re.compile(r"^([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(S|HL|HR|FL|FR)$", re.I)
KDEF_ANGLES = {"S": "straight", "HL": "half_left", "HR": "half_right", "FL": "full_left",
               "FR": "full_right"}
# JAFFE: poser initials, expression code + take, picture number: KA.AN1.39.tiff
JAFFE_NAME = re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d+)\.(\d+)$", re.I)


def parse_kdef(stem: str) -> FileSpec:
    match = KDEF_NAME.match(stem)
    if not match:
        raise ValueError(f"{stem!r} is not a KDEF name like AF01ANS (session, gender, id, "
                         "expression, angle)")
    session, gender, number, code, angle = (g.upper() for g in match.groups())
    return FileSpec(
        path=Path(), label=KDEF_CODES[code], original_label=code,
        subject_id=f"kdef:{gender}{number}",
        attributes={"session": session, "gender": gender, "pose": KDEF_ANGLES[angle]},
    )


def parse_jaffe(stem: str) -> FileSpec:
    match = JAFFE_NAME.match(stem)
    if not match:
        raise ValueError(f"{stem!r} is not a JAFFE name like KA.AN1.39")
    poser, code, take, number = match.groups()
    label = JAFFE_CODES.get(code.upper())
    if label is None:
        raise LookupError(f"expression code {code!r} is not one of {sorted(JAFFE_CODES)}")
    return FileSpec(
        path=Path(), label=label, original_label=code.upper(),
        subject_id=f"jaffe:{poser.upper()}",
        attributes={"take": int(take), "number": int(number)},
    )


@dataclass
class NamedFileReader:
    """Every image under the folder, labelled by parsing its name."""

    name: str
    layout: str
    parse: Callable[[str], FileSpec]

    def detect(self, root: Path) -> bool:
        return any(self._parses(p) for p in walk_files(root) if is_image(p))

    def _parses(self, path: Path) -> bool:
        try:
            self.parse(path.stem)
            return True
        except (ValueError, LookupError):
            return False

    def scan(self, root: Path, dataset: str, options: ReadOptions) -> Scan:
        files = [p for p in walk_files(root) if is_image(p) and not is_ignored(p)]

        def outcomes() -> Iterator[Record | Reject]:
            specs = []
            for path in files:
                try:
                    spec = self.parse(path.stem)
                except ValueError as exc:
                    yield Reject(dataset, relpath(path, root), "unparsable_name", str(exc))
                    continue
                except LookupError as exc:
                    yield Reject(dataset, relpath(path, root), "unknown_label", str(exc))
                    continue
                spec.path = path
                specs.append(spec)
            yield from decode_specs(specs, root, dataset, options)

        return Scan([relpath(p, root) for p in files], outcomes())


KDEF = NamedFileReader("kdef", "KDEF/AF01/AF01ANS.JPG (session, gender, id, expression, angle)",
                       parse_kdef)
JAFFE = NamedFileReader("jaffe", "KA.AN1.39.tiff (poser, expression+take, number)", parse_jaffe)
