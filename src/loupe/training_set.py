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
        return not (entry.positives.isdisjoint(self.concept_ids) and entry.negatives.isdisjoint(self.concept_ids))

    def marked(self, entries: list[LabelEntry], *, positive: bool) -> np.ndarray:
        """bool [n, c]: which of the model's concepts each input names as positive (or negative).
        Walks each input's own labels, not every concept, so a million inputs x 100 concepts is fast."""
        column = {concept: j for j, concept in enumerate(self.concept_ids)}
        rows, cols = [], []
        for i, entry in enumerate(entries):
            for concept in entry.positives if positive else entry.negatives:
                j = column.get(concept)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        out = np.zeros((len(entries), len(self.concept_ids)), bool)
        out[rows, cols] = True
        return out

    def matrices(self, entries: list[LabelEntry]) -> tuple[np.ndarray, np.ndarray]:
        """(positive, negative) bool [n, c]. An input positive for one of the model's concepts is a
        negative for the others; one labeled with none of them is a negative for all (open environment)."""
        pos = self.marked(entries, positive=True)
        neg = self.marked(entries, positive=False)
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
    explicit = rule.marked(entries, positive=False)
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
