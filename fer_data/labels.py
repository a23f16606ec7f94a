"""Canonical expression classes and the label vocabularies of each source dataset."""

from __future__ import annotations

# FER2013 index order: the 7-class set every FER paper reports on.
FER7: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# Classes some datasets add; the publish stage drops or maps them by policy.
EXTRA: tuple[str, ...] = ("contempt", "calm")
CANONICAL: tuple[str, ...] = FER7 + EXTRA

# Folder names seen in the wild for each class (Kaggle sets, CK+48, 4-class sets).
SYNONYMS: dict[str, str] = {
    **{name: name for name in CANONICAL},
    "anger": "angry",
    "mad": "angry",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "suprise": "surprise",
    "normal": "neutral",
    "neutrality": "neutral",
}

FER2013_INDEX: dict[int, str] = dict(enumerate(FER7))

CKPLUS_CODES: dict[int, str] = {
    0: "neutral",
    1: "angry",
    2: "contempt",
    3: "disgust",
    4: "fear",
    5: "happy",
    6: "sad",
    7: "surprise",
}

KDEF_CODES: dict[str, str] = {
    "AF": "fear",
    "AN": "angry",
    "DI": "disgust",
    "HA": "happy",
    "NE": "neutral",
    "SA": "sad",
    "SU": "surprise",
}

JAFFE_CODES: dict[str, str] = {
    "AN": "angry",
    "DI": "disgust",
    "FE": "fear",
    "HA": "happy",
    "NE": "neutral",
    "SA": "sad",
    "SU": "surprise",
}

RAVDESS_CODES: dict[int, str] = {
    1: "neutral",
    2: "calm",
    3: "happy",
    4: "sad",
    5: "angry",
    6: "fear",
    7: "disgust",
    8: "surprise",
}

# RAF-DB basic, EmoLabel/list_patition_label.txt
RAFDB_CODES: dict[int, str] = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happy",
    5: "sad",
    6: "angry",
    7: "neutral",
}
# RAF-DB compound, the same file name in compound/EmoLabel/: two-word expressions the seven
# classes cannot hold (its rows become compound_expression rejects)
RAFDB_COMPOUND: dict[int, str] = {
    1: "happily surprised",
    2: "happily disgusted",
    3: "sadly fearful",
    4: "sadly angry",
    5: "sadly surprised",
    6: "sadly disgusted",
    7: "fearfully angry",
    8: "fearfully surprised",
    9: "angrily surprised",
    10: "angrily disgusted",
    11: "disgustedly surprised",
}

# ExpW, data/label/label.lst: the FER2013 order
EXPW_CODES: dict[int, str] = dict(enumerate(FER7))

# AffectNet expression codes; 8-10 are not expressions (their rows become rejects)
AFFECTNET_CODES: dict[int, str] = {
    0: "neutral",
    1: "happy",
    2: "sad",
    3: "surprise",
    4: "fear",
    5: "disgust",
    6: "angry",
    7: "contempt",
}
AFFECTNET_NOT_EXPRESSIONS: dict[int, str] = {8: "none", 9: "uncertain", 10: "no_face"}

# FER+ (fer2013new.csv) vote columns, in file order.
FERPLUS_COLUMNS: dict[str, str | None] = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": "contempt",
    "unknown": None,
    "NF": None,
}


def canonical(name: str) -> str | None:
    """Canonical class for a folder or label name, or None when it is not an expression."""
    return SYNONYMS.get(name.strip().lower())


# The class sets a curated dataset can be published as; label index = position in the tuple.
CLASS_SETS: dict[str, tuple[str, ...]] = {
    "fer7": FER7,
    "fer4_nhsa": ("neutral", "happy", "sad", "angry"),
    "fer4_hnss": ("happy", "neutral", "sad", "surprise"),
}


def class_names(class_set: str) -> tuple[str, ...]:
    """The classes of a class set, in label index order."""
    if class_set not in CLASS_SETS:
        raise ValueError(f"unknown class set {class_set!r}; choose from {sorted(CLASS_SETS)}")
    return CLASS_SETS[class_set]


def map_label(label: str | None, class_set: str, calm: str = "neutral") -> str | None:
    """A canonical label in a class set's terms, or None when the set leaves it out. RAVDESS
    "calm" becomes neutral (calm="neutral") or is left out (calm="drop"); contempt is always
    left out, no class set has it."""
    if label == "calm":
        label = "neutral" if calm == "neutral" else None
    if label is None or label not in class_names(class_set):
        return None
    return label


def target_count(counts: dict[str, int], target: str, wanted: str) -> int:
    """How many target-class faces training should end with: another class's count (the
    source project used fear's), "max" (the largest class), or a number."""
    if wanted == "max":
        return max(counts.values())
    if wanted.isdigit():
        return int(wanted)
    if wanted not in counts:
        raise ValueError(f"target {wanted!r}: not a class in {sorted(counts)}, 'max' or a number")
    return counts[wanted]
