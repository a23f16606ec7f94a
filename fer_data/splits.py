"""Splits stage: train/val/test for every kept face, without leakage.

- A dataset's official split is kept (FER2013 Training/PublicTest/PrivateTest, folder sets'
  train/validation).
- Faces with a subject and no official split are split by subject (every picture of a person in
  one split), label-stratified as far as whole subjects allow, deterministic from a seed.
- Faces with neither are split per image, stratified by label.
Duplicates were already collapsed to one representative per cluster (taken from the most
protected split), so no cluster straddles splits; `check_leaks` verifies it from the keys.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fer_data.schema import SPLIT, SPLITS


@dataclass(frozen=True)
class SplitOptions:
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0


def split_subjects(subject_labels: dict[str, Counter], options: SplitOptions,
                   rng: np.random.Generator) -> dict[str, str]:
    """Greedy stratified assignment of whole subjects: largest subjects first (ties in random
    order), each to the split whose per-label counts lag their targets the most."""
    totals = Counter()
    for counts in subject_labels.values():
        totals.update(counts)
    labels = sorted(totals)
    target = {s: np.array([totals[k] * r for k in labels]) for s, r in zip(SPLITS, options.ratios,
                                                                           strict=True)}
    have = {s: np.zeros(len(labels)) for s in SPLITS}
    subjects = sorted(subject_labels)
    jitter = rng.permutation(len(subjects))
    order = sorted(range(len(subjects)),
                   key=lambda i: (-sum(subject_labels[subjects[i]].values()), jitter[i]))
    assignment = {}
    for i in order:
        subject = subjects[i]
        vector = np.array([subject_labels[subject][k] for k in labels], dtype=float)
        # how much closer to its target each split gets; splits with no room score lower
        gains = {s: float(np.minimum(vector, np.maximum(target[s] - have[s], 0)).sum()
                          - 0.5 * np.maximum(have[s] + vector - target[s], 0).sum())
                 for s in SPLITS if options.ratios[SPLITS.index(s)] > 0}
        # ties go to the split with least data, then to test before val: a test set matters most
        best = max(gains, key=lambda s: (gains[s], -have[s].sum(), SPLITS.index(s)))
        assignment[subject] = best
        have[best] += vector
    return assignment


def split_images(labels: list[str], options: SplitOptions,
                 rng: np.random.Generator) -> list[str]:
    """Per-image stratified split for faces with no subject and no official split."""
    out = [""] * len(labels)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    bounds = np.cumsum(options.ratios)
    for label in sorted(by_label):
        idx = np.array(by_label[label])[rng.permutation(len(by_label[label]))]
        cut = np.round(bounds / bounds[-1] * len(idx)).astype(int)
        for split, part in zip(SPLITS, np.split(idx, cut[:-1]), strict=True):
            for i in part:
                out[int(i)] = split
    return out


def assign_splits(index: pa.Table, options: SplitOptions) -> pa.Table:
    """Split for every kept row of the face index: image_id, dataset, label, subject_id,
    split, split_rule."""
    kept = index.filter(index.column("keep"))
    ids = kept.column("image_id").to_pylist()
    labels = kept.column("label").to_pylist()
    subjects = kept.column("subject_id").to_pylist()
    official = kept.column("official_split").to_pylist()
    rng = np.random.default_rng(options.seed)

    split: list[str | None] = list(official)
    rule = ["official" if s else None for s in official]
    # each dataset is split on its own, so every dataset shows up in every split
    datasets = kept.column("dataset").to_pylist()
    per_dataset: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for i, (s, subject) in enumerate(zip(official, subjects, strict=True)):
        if s is None and subject:
            per_dataset[datasets[i]][subject][labels[i]] += 1
    by_subject: dict[str, str] = {}
    for dataset in sorted(per_dataset):
        by_subject.update(split_subjects(per_dataset[dataset], options, rng))
    loose = [i for i, (s, subject) in enumerate(zip(official, subjects, strict=True))
             if s is None and not subject]
    for i, subject in enumerate(subjects):
        if split[i] is None and subject:
            split[i], rule[i] = by_subject[subject], "subject"
    for i, s in zip(loose, split_images([labels[i] for i in loose], options, rng), strict=True):
        split[i], rule[i] = s, "stratified"
    return pa.table({
        "image_id": ids,
        "dataset": kept.column("dataset"),
        "label": labels,
        "subject_id": pa.array(subjects, pa.string()),  # all-null still has a type to join on
        "split": split,
        "split_rule": rule,
    }, schema=SPLIT)


@dataclass
class LeakReport:
    duplicate_pairs_across_splits: int
    by_key: dict[str, int]  # crossing pairs each key finds (a pair can be found by several)
    subjects_across_splits: int
    examples: list[str]


def check_leaks(splits: pa.Table, kept_pairs: pa.Table) -> LeakReport:
    """Recheck the split rows: the duplicate edges face_index found between two faces it kept
    (`kept_pairs`, schema.KEPT_PAIRS: every key's pairs, mirrors included) whose faces sit in
    different splits, and subjects present in more than one split. It looks at the pairs the
    keys found, not at the clusters the index made, so a wrong keep decision or a wrong split
    shows up here; only kept faces get a split, so no other edge can cross one."""
    split_of = dict(zip(splits.column("image_id").to_pylist(),
                        splits.column("split").to_pylist(), strict=True))
    crossing = [(x, y, key) for x, y, key in zip(kept_pairs.column("image_id_a").to_pylist(),
                                                 kept_pairs.column("image_id_b").to_pylist(),
                                                 kept_pairs.column("key").to_pylist(), strict=True)
                if split_of.get(x) and split_of.get(y) and split_of[x] != split_of[y]]
    pairs = sorted({tuple(sorted((x, y))) for x, y, _ in crossing})
    subject_splits: dict[str, set] = defaultdict(set)
    for subject, s in zip(splits.column("subject_id").to_pylist(),
                          splits.column("split").to_pylist(), strict=True):
        if subject:
            subject_splits[subject].add(s)
    leaking = sorted(k for k, v in subject_splits.items() if len(v) > 1)
    examples = [f"{x} ({split_of[x]}) ~ {y} ({split_of[y]})" for x, y in pairs[:5]]
    return LeakReport(len(pairs), dict(Counter(key for _, _, key in crossing)), len(leaking),
                      examples + leaking[:5])
