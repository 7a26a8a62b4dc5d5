"""Which inputs train a model, and what each says about each of the model's concepts."""

from __future__ import annotations

import msgspec
import numpy as np

from loupe.label_mirror import AppLabels, LabelEntry


class LabelRule(msgspec.Struct, frozen=True):
    concept_ids: tuple[str, ...]
    closed_environment: bool

    def relevant(self, entry: LabelEntry) -> bool:
        """Does this input take part (as example or neighbour) for the model?"""
        if not self.closed_environment:
            return True
        return any(c in entry.positives or c in entry.negatives for c in self.concept_ids)

    def matrices(self, entries: list[LabelEntry]) -> tuple[np.ndarray, np.ndarray]:
        """(positive, negative) bool [n, c]. An input positive for one of the model's concepts is a
        negative for the others; one labeled with none of them is a negative for all (open environment)."""
        c = len(self.concept_ids)
        pos = np.zeros((len(entries), c), bool)
        neg = np.zeros((len(entries), c), bool)
        for i, entry in enumerate(entries):
            for j, concept in enumerate(self.concept_ids):
                pos[i, j] = concept in entry.positives
                neg[i, j] = concept in entry.negatives
        has_pos = pos.any(axis=1, keepdims=True)
        implied = has_pos if self.closed_environment else np.ones_like(has_pos)
        neg |= implied & ~pos
        return pos, neg


class TrainingSet(msgspec.Struct):
    seqs: np.ndarray  # int64 [n]
    input_ids: list[str]
    positive: np.ndarray  # bool [n, c]
    negative: np.ndarray  # bool [n, c]
    explicit_negative: np.ndarray  # bool [n, c]: only the not_concepts annotations


def collect(labels: AppLabels, rule: LabelRule) -> TrainingSet:
    items = [(seq, e) for seq, e in sorted(labels.entries.items()) if rule.relevant(e)]
    entries = [e for _, e in items]
    pos, neg = rule.matrices(entries)
    explicit = np.array([[c in e.negatives for c in rule.concept_ids] for e in entries], bool).reshape(
        len(entries), len(rule.concept_ids))
    return TrainingSet(np.asarray([s for s, _ in items], np.int64), [e.input_id for e in entries], pos, neg, explicit)


def example_groups(positive: np.ndarray) -> np.ndarray:
    """Per example: its first positive concept's index, or len(concepts) for one with no positive.
    Stratified folds and subsamples draw from each group alike."""
    return np.where(positive.any(axis=1), positive.argmax(axis=1), positive.shape[1])


def bounded(ts: TrainingSet, limit: int, seed: int = 0) -> TrainingSet:
    """At most `limit` examples, stratified: every concept keeps an equal share (all of its examples
    when it has fewer), so a million-example train reads and fits a bounded sample, and rare concepts
    lose nothing. Returned in sequence order."""
    n = len(ts.seqs)
    if n <= limit:
        return ts
    groups = example_groups(ts.positive)
    counts = np.bincount(groups)
    # The largest equal share s with sum(min(count, s)) <= limit (water-filling over sorted counts).
    share, budget = 0, limit
    remaining = len(counts[counts > 0])
    for size in np.sort(counts[counts > 0]):
        if size * remaining <= budget:
            budget -= int(size)
            share = int(size)
            remaining -= 1
        else:
            share = budget // remaining
            break
    rng = np.random.default_rng(seed)
    rows = np.sort(np.concatenate([
        members if len(members) <= share else rng.choice(members, share, replace=False)
        for members in (np.flatnonzero(groups == g) for g in range(len(counts))) if len(members)]))
    return TrainingSet(ts.seqs[rows], [ts.input_ids[i] for i in rows], ts.positive[rows], ts.negative[rows],
                       ts.explicit_negative[rows])
