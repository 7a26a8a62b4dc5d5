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
