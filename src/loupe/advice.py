"""Data-quality advice: the checks behind "a well built concept", each finding naming the inputs to fix."""

from __future__ import annotations

import msgspec
import numpy as np

from loupe.store.records import Evaluation
from loupe.training_set import TrainingSet

MIN_POSITIVES = 25
IMBALANCE_RATIO = 5.0
NEIGHBOUR_DISAGREEMENT = 0.6  # share of the nearest examples (3 of 5) that must lack the label
DUPLICATE_SIMILARITY = 0.9  # re-encoded or resized copies score 0.9-0.95 here; distinct photos < 0.75
MAX_DUPLICATE_ROWS = 5000  # pairwise check is quadratic; larger sets are checked on a sample


class Finding(msgspec.Struct, kw_only=True):
    kind: str  # few_examples | imbalance | suspected_mislabel | near_duplicates
    message: str
    concept_ids: list[str]
    input_ids: list[str] = []
    score: float = 0.0  # how strong the evidence is (ratio, confidence or similarity)
    suggested_concept: str | None = None


def advise(x: np.ndarray, ts: TrainingSet, concept_ids: list[str], mutually_exclusive: bool,
           evaluation: Evaluation | None) -> list[Finding]:
    findings = few_examples(ts, concept_ids) + imbalance(ts, concept_ids)
    if evaluation is not None and evaluation.predictions:
        findings += suspected_mislabels(x, ts, concept_ids, mutually_exclusive, evaluation)
    findings += near_duplicates(x, ts, concept_ids)
    return findings


def few_examples(ts: TrainingSet, concept_ids: list[str]) -> list[Finding]:
    out = []
    for concept, n in zip(concept_ids, ts.positive.sum(axis=0).tolist()):
        if n < MIN_POSITIVES:
            out.append(Finding(kind="few_examples", concept_ids=[concept], score=float(n),
                               message=f"concept {concept!r} has {n} positive example{'s' * (n != 1)}; "
                                       f"add at least {MIN_POSITIVES - n} more for a well built concept"))
    return out


def imbalance(ts: TrainingSet, concept_ids: list[str]) -> list[Finding]:
    counts = ts.positive.sum(axis=0)
    if len(counts) < 2 or counts.max() == 0:
        return []
    big = int(counts.argmax())
    out = []
    for j, n in enumerate(counts.tolist()):
        ratio = counts[big] / max(n, 1)
        if j != big and ratio >= IMBALANCE_RATIO:
            out.append(Finding(
                kind="imbalance", concept_ids=[concept_ids[big], concept_ids[j]], score=float(ratio),
                message=f"concept {concept_ids[big]!r} has {ratio:.1f}x the positives of {concept_ids[j]!r} "
                        f"({int(counts[big])} vs {n}); balance them for fair confidences"))
    return out


def suspected_mislabels(x: np.ndarray, ts: TrainingSet, concept_ids: list[str], mutually_exclusive: bool,
                        evaluation: Evaluation, k: int = 5) -> list[Finding]:
    """A positive label that the held-out model does not pick AND most nearest examples do not share."""
    row_of = {input_id: i for i, input_id in enumerate(ts.input_ids)}
    sims = x @ x.T if len(x) <= MAX_DUPLICATE_ROWS else None
    out = []
    for held in evaluation.predictions:
        i = row_of.get(held.input_id)
        if i is None:
            continue
        scores = np.asarray(held.scores)
        for concept in held.positives:
            j = concept_ids.index(concept)
            contradicted = scores[j] < scores.max() if mutually_exclusive else scores[j] < 0.5
            if not contradicted:
                continue
            row_sims = sims[i] if sims is not None else x @ x[i]
            nearest = [n for n in np.argsort(-row_sims)[:k + 1] if n != i][:k]
            disagree = 1.0 - float(ts.positive[nearest, j].mean())
            if disagree < NEIGHBOUR_DISAGREEMENT:
                continue  # the neighbours side with the label: a hard example, not a mislabel
            votes = ts.positive[nearest].sum(axis=0)
            best = int(votes.argmax())
            suggestion = concept_ids[best] if best != j and votes[best] > k // 2 else None
            out.append(Finding(
                kind="suspected_mislabel", concept_ids=[concept], input_ids=[held.input_id],
                score=(1.0 - float(scores[j]) + disagree) / 2, suggested_concept=suggestion,
                message=f"input {held.input_id!r} is labeled {concept!r}, but a model that never saw it gives "
                        f"{concept!r} only {scores[j]:.2f} and {round(disagree * k)} of its {k} nearest examples "
                        f"are not {concept!r}" + (f"; it looks like {suggestion!r}" if suggestion else "")))
    return sorted(out, key=lambda f: -f.score)


def near_duplicates(x: np.ndarray, ts: TrainingSet, concept_ids: list[str]) -> list[Finding]:
    """Pairs of nearly identical images that carry different labels."""
    rows = np.arange(len(x))
    if len(rows) > MAX_DUPLICATE_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(rows, MAX_DUPLICATE_ROWS, replace=False))
    sub = x[rows]
    out = []
    for start in range(0, len(rows), 1024):
        block = sub[start:start + 1024] @ sub.T
        for r, c in zip(*np.nonzero(block >= DUPLICATE_SIMILARITY)):
            a, b = rows[start + r], rows[c]
            if a >= b or np.array_equal(ts.positive[a], ts.positive[b]):
                continue
            both = np.flatnonzero(ts.positive[a] | ts.positive[b])
            out.append(Finding(
                kind="near_duplicates", input_ids=[ts.input_ids[a], ts.input_ids[b]], score=float(block[r, c]),
                concept_ids=[concept_ids[j] for j in both],
                message=f"inputs {ts.input_ids[a]!r} and {ts.input_ids[b]!r} look alike "
                        f"(similarity {block[r, c]:.3f}) but are labeled differently"))
    return sorted(out, key=lambda f: -f.score)

