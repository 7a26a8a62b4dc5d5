"""Which inputs train a model, and what each says about each of the model's concepts.

Three kinds of input per model: labeled for its concepts (examples); labeled only with other concepts
of the app (an open environment's negatives, as Clarifai has them; left out in a closed one); and
carrying no label at all. An input with no label is never a negative of a mutually exclusive model
(exactly one concept applies to it: which, nobody said); for an open multi-label model each train
chooses by validation whether such inputs are background negatives (`UnlabeledRule.NEGATIVES`), a
pool for self-training, or left out (loupe.semi_supervised), and the version records the choice.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec
import numpy as np

from loupe.learning.labeled import AppLabels, LabelEntry


class UnlabeledRule(StrEnum):
    """What a version made of the app's inputs with no label (for it), chosen per train."""

    IGNORED = "ignored"  # not examples, not neighbours
    NEGATIVES = "negatives"  # background negatives of every concept (open multi-label models only)
    PSEUDO_LABELS = "pseudo_labels"  # the most confident became pseudo-labels (self-training)


class LabelRule(msgspec.Struct, frozen=True):
    concept_ids: tuple[str, ...]
    closed_environment: bool
    unlabeled_negatives: bool = False  # inputs with no label at all are negatives (and vote as such)

    def relevant(self, entry: LabelEntry) -> bool:
        """Does this input take part (as example or neighbour) for the model?"""
        if self.names_a_concept(entry):
            return True
        if self.closed_environment:
            return False
        return bool(entry.positives or entry.negatives) or self.unlabeled_negatives

    def unlabeled(self, entry: LabelEntry) -> bool:
        """An input with nothing to say about the model: the pool self-training and "label next" draw from."""
        if self.closed_environment:
            return not self.names_a_concept(entry)
        return not (entry.positives or entry.negatives)

    def names_a_concept(self, entry: LabelEntry) -> bool:
        """The input is labeled (either way) with one of the model's concepts."""
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
        """(positive, negative) bool [n, c] of relevant entries. An input positive for one of the model's
        concepts is a negative for the others; in an open environment one labeled with none of them (with
        other concepts, or an unlabeled input under UnlabeledRule.NEGATIVES) is a negative for all."""
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
    sha256: list[str] = []  # content hash per row (cross-validation keeps copies of a photo in one fold)


def unlabeled_rule_of(closed_environment: bool, recorded: str) -> UnlabeledRule:
    """The rule a stored version was trained (and predicts) with. Versions from before the three kinds
    (nothing recorded) treated unlabeled inputs of an open model as negatives."""
    if recorded:
        return UnlabeledRule(recorded)
    return UnlabeledRule.IGNORED if closed_environment else UnlabeledRule.NEGATIVES


def rule_of(concept_ids: list[str], closed_environment: bool, recorded: str) -> LabelRule:
    negatives = unlabeled_rule_of(closed_environment, recorded) is UnlabeledRule.NEGATIVES
    return LabelRule(tuple(concept_ids), closed_environment, negatives)


def collect(labels: AppLabels, rule: LabelRule) -> TrainingSet:
    items = [(seq, e) for seq, e in sorted(list(labels.entries.items())) if rule.relevant(e)]
    entries = [e for _, e in items]
    pos, neg = rule.matrices(entries)
    explicit = rule.marked(entries, positive=False)
    return TrainingSet(np.asarray([s for s, _ in items], np.int64), [e.input_id for e in entries], pos, neg, explicit,
                       [e.sha256 for e in entries])


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
    return subset(ts, rows)


def subset(ts: TrainingSet, rows: np.ndarray) -> TrainingSet:
    return TrainingSet(ts.seqs[rows], [ts.input_ids[i] for i in rows], ts.positive[rows], ts.negative[rows],
                       ts.explicit_negative[rows], [ts.sha256[i] for i in rows] if ts.sha256 else [])


def unlabeled_seqs(labels: AppLabels, rule: LabelRule, limit: int) -> np.ndarray:
    """The app's inputs that say nothing about the model (loupe.training_set: no label at all, or in a
    closed environment none for its concepts): what self-training and "label these next" draw from; a
    fixed random sample of `limit` beyond it, to bound the work."""
    return sample_seqs([s for s, e in list(labels.entries.items()) if rule.unlabeled(e)], limit)


def sample_seqs(seqs: list[int], limit: int) -> np.ndarray:
    out = np.asarray(seqs, np.int64)
    return np.sort(np.random.default_rng(0).choice(out, limit, replace=False)) if len(out) > limit else out
