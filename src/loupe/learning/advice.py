"""Data-quality advice: the checks behind "a well built concept", each finding naming the inputs to fix."""

from __future__ import annotations

from enum import StrEnum

import msgspec
import numpy as np

from loupe.learning.training_set import TrainingSet
from loupe.learning.values import Evaluation

MIN_POSITIVES = 25
IMBALANCE_RATIO = 5.0
NEIGHBOUR_DISAGREEMENT = 0.8  # share of the nearest examples (4 of 5) that must lack the label
SMALL_APP_NEIGHBOUR_DISAGREEMENT = 0.6  # 3 of 5, where few examples of a concept exist to be neighbours
# cleanlab's filter: flags as many labels as confident learning estimates are wrong (per-class
# thresholds), the least self-confident first. Chosen on seeds 0-2 of benchmarks/mislabels.py among
# five filters; docs/models.md reports unseen seeds.
CONFIDENT_LEARNING_FILTER = "low_self_confidence"
# Below this many positives of some concept, per-class thresholds are guesses (a 6-example concept's
# mean confidence says little): such small apps flag labels the held-out model does not pick instead.
CONFIDENT_LEARNING_MIN_PER_CONCEPT = 10
# Two concepts are confusable when many of their inputs sit between them: the held-out model answers the
# other concept, or gives it at least BETWEEN_SHARE of its belief next to the input's own, and that
# happens both ways. A pair is reported when such inputs are at least CONFUSED_FRACTION of the pair's
# labeled inputs (and MIN_CONFUSED of them); a label is then suspected within that pair only if the
# model gives its own concept at most STANDS_OUT (standing out against the pair's confusion). Chosen on seeds 0-2 of
# `benchmarks/mislabels.py --hard`; docs/models.md reports other seeds.
BETWEEN_SHARE = 0.2
CONFUSED_FRACTION = 0.05
MIN_CONFUSED = 3
STANDS_OUT = 0.01
DUPLICATE_SIMILARITY = 0.9  # re-encoded or resized copies score 0.9-0.95 here; distinct photos < 0.75
MAX_DUPLICATE_ROWS = 5000  # pairwise check is quadratic; larger sets are checked on a sample


class FindingKind(StrEnum):
    FEW_EXAMPLES = "few_examples"
    IMBALANCE = "imbalance"
    CONFUSABLE_CONCEPTS = "confusable_concepts"
    SUSPECTED_MISLABEL = "suspected_mislabel"
    NEAR_DUPLICATES = "near_duplicates"


class Finding(msgspec.Struct, kw_only=True):
    kind: FindingKind
    message: str
    concept_ids: list[str]
    input_ids: list[str] = []
    score: float = 0.0  # how strong the evidence is (ratio, confidence or similarity)
    suggested_concept: str | None = None


def advise(x: np.ndarray, ts: TrainingSet, concept_ids: list[str], mutually_exclusive: bool,
           evaluation: Evaluation | None) -> list[Finding]:
    findings = few_examples(ts, concept_ids) + imbalance(ts, concept_ids)
    if evaluation is not None and evaluation.predictions:
        confused = confusable_concepts(concept_ids, evaluation)
        findings += confused
        findings += suspected_mislabels(x, ts, concept_ids, mutually_exclusive, evaluation,
                                        confusable={frozenset(f.concept_ids) for f in confused})
    findings += near_duplicates(x, ts, concept_ids)
    return findings


def few_examples(ts: TrainingSet, concept_ids: list[str]) -> list[Finding]:
    out = []
    for concept, n in zip(concept_ids, ts.positive.sum(axis=0).tolist()):
        if n < MIN_POSITIVES:
            out.append(Finding(kind=FindingKind.FEW_EXAMPLES, concept_ids=[concept], score=float(n),
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
                kind=FindingKind.IMBALANCE, concept_ids=[concept_ids[big], concept_ids[j]], score=float(ratio),
                message=f"concept {concept_ids[big]!r} has {ratio:.1f}x the positives of {concept_ids[j]!r} "
                        f"({int(counts[big])} vs {n}); balance them for fair confidences"))
    return out


def _beliefs(scores: list[float]) -> np.ndarray:
    """Held-out scores as shares of the model's belief (rows sum to 1; a multi-label model's too)."""
    p = np.clip(np.asarray(scores, np.float64), 1e-6, None)
    return p / p.sum()


def confusable_concepts(concept_ids: list[str], evaluation: Evaluation) -> list[Finding]:
    """Pairs of concepts the held-out model often cannot tell apart: inputs of one it gives to the other,
    both ways, or splits between them. Random mislabels scatter over all pairs; a confusable pair
    gathers them both ways (shirt <-> t-shirt), so it is reported as one finding with its inputs."""
    index = {c: j for j, c in enumerate(concept_ids)}
    crossed: dict[tuple[int, int], list[str]] = {}
    ways: dict[tuple[int, int], np.ndarray] = {}  # the pair's crossed inputs labeled (first, second)
    labeled = np.zeros(len(concept_ids), np.int64)
    for h in evaluation.predictions:
        own = [index[c] for c in h.positives if c in index]
        if len(own) != 1 or len(concept_ids) < 2:
            continue
        a = own[0]
        labeled[a] += 1
        p = _beliefs(h.scores)
        top2 = np.argsort(-p, kind="stable")[:2]
        b = int(top2[1] if top2[0] == a else top2[0])
        if top2[0] == a and p[b] < BETWEEN_SHARE:
            continue  # answered as labeled, without doubt
        pair = (min(a, b), max(a, b))
        crossed.setdefault(pair, []).append(h.input_id)
        ways.setdefault(pair, np.zeros(2, np.int64))[int(a == pair[1])] += 1
    out = []
    for pair, inputs in crossed.items():
        a, b = pair
        share = len(inputs) / max(1, labeled[a] + labeled[b])
        # Both ways, and each concept with enough inputs that a few crossings are a pattern, not two strays.
        enough = min(labeled[a], labeled[b]) >= CONFIDENT_LEARNING_MIN_PER_CONCEPT
        if len(inputs) >= MIN_CONFUSED and share >= CONFUSED_FRACTION and ways[pair].min() >= 1 and enough:
            ca, cb = concept_ids[a], concept_ids[b]
            out.append(Finding(
                kind=FindingKind.CONFUSABLE_CONCEPTS, concept_ids=[ca, cb], input_ids=inputs, score=share,
                message=f"{ca!r} and {cb!r} are often confused: {len(inputs)} inputs ({share:.0%} of theirs) sit "
                        f"between them; add examples that tell them apart, or merge them"))
    return sorted(out, key=lambda f: -f.score)


def suspected_mislabels(x: np.ndarray, ts: TrainingSet, concept_ids: list[str], mutually_exclusive: bool,
                        evaluation: Evaluation, k: int = 5,
                        confusable: set[frozenset[str]] | None = None) -> list[Finding]:
    """Labels that confident learning (cleanlab) flags on out-of-sample probabilities, with per-class
    thresholds, AND that most of the input's nearest labeled examples do not share; ranked by label
    quality, worst first. Flagging every label the held-out model merely disagrees with reported the
    model's own confusions as people's mistakes: with 5 % of labels flipped at random, precision 0.42
    on Caltech-101 and 0.34 on Clothing-10, and 7-10 % of clean apps flagged (benchmarks/mislabels.py).
    Between two `confusable` concepts a label must stand out against their confusion: the held-out model
    gives its own concept at most STANDS_OUT of its belief."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    row_of = {input_id: i for i, input_id in enumerate(ts.input_ids)}
    held = [h for h in evaluation.predictions if h.input_id in row_of and h.positives]
    if len(held) < 2 or len(concept_ids) < 2:
        return []
    rows = np.asarray([row_of[h.input_id] for h in held])
    probs = np.clip(np.asarray([h.scores for h in held], np.float64), 1e-6, 1.0)
    index = {c: j for j, c in enumerate(concept_ids)}
    counts = ts.positive.sum(axis=0)
    small = bool(counts.min() < CONFIDENT_LEARNING_MIN_PER_CONCEPT)
    flagged: list[tuple[int, int]]
    if small:
        # Too few examples of some concept to estimate its threshold: flag a label the held-out model
        # does not pick (the neighbour check below still has to agree), worst first.
        j_of = [[index[c] for c in h.positives] for h in held]
        flagged = [(n, j) for n, js in enumerate(j_of) for j in js
                   if (probs[n, j] < probs[n].max() if mutually_exclusive else probs[n, j] < 0.5)]
        quality = np.asarray([min(probs[n, j] for j in js) for n, js in enumerate(j_of)])
    elif mutually_exclusive:
        probs = probs / probs.sum(axis=1, keepdims=True)
        labels = np.asarray([index[h.positives[0]] for h in held])
        issues = find_label_issues(labels, probs, filter_by=CONFIDENT_LEARNING_FILTER)
        quality = get_label_quality_scores(labels, probs)
        flagged = [(int(n), int(labels[n])) for n in np.flatnonzero(issues)]
    else:  # one-vs-rest: each positive label on its own, against that concept's held-out score
        flagged, quality = [], np.ones(len(held))
        for j in range(len(concept_ids)):
            given = np.asarray([index.get(concept_ids[j]) in [index[c] for c in h.positives] for h in held], int)
            if given.min() == given.max():
                continue
            p = np.stack([1 - probs[:, j], probs[:, j]], axis=1)
            issues = find_label_issues(given, p, filter_by=CONFIDENT_LEARNING_FILTER)
            flagged += [(int(n), j) for n in np.flatnonzero(issues & (given == 1))]
            quality = np.minimum(quality, np.where(given == 1, probs[:, j], 1.0))
    sims = x @ x.T if len(x) <= MAX_DUPLICATE_ROWS else None
    out = []
    for n, j in flagged:
        i = rows[n]
        row_sims = sims[i] if sims is not None else x @ x[i]
        nearest = [m for m in np.argsort(-row_sims)[:k + 1] if m != i][:k]
        disagree = 1.0 - float(ts.positive[nearest, j].mean())
        if disagree < (SMALL_APP_NEIGHBOUR_DISAGREEMENT if small else NEIGHBOUR_DISAGREEMENT):
            continue  # the neighbours side with the label: a hard example, not a mislabel
        votes = ts.positive[nearest].sum(axis=0)
        best = int(votes.argmax())
        rival = int(np.argmax(np.where(np.arange(len(concept_ids)) == j, -1.0, probs[n])))
        if confusable and frozenset((concept_ids[j], concept_ids[rival])) in confusable \
                and _beliefs(held[n].scores)[j] > STANDS_OUT:
            continue  # one of a confusable pair's in-between inputs: reported with the pair, not as a mistake
        suggestion = concept_ids[best] if best != j and votes[best] > k // 2 else None
        concept, score = concept_ids[j], float(probs[n, j])
        out.append(Finding(
            kind=FindingKind.SUSPECTED_MISLABEL, concept_ids=[concept], input_ids=[held[n].input_id],
            score=1.0 - float(quality[n]), suggested_concept=suggestion,
            message=f"input {held[n].input_id!r} is labeled {concept!r}, but a model that never saw it gives "
                    f"{concept!r} only {score:.2f} and {round(disagree * k)} of its {k} nearest examples "
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
                kind=FindingKind.NEAR_DUPLICATES, input_ids=[ts.input_ids[a], ts.input_ids[b]],
                score=float(block[r, c]),
                concept_ids=[concept_ids[j] for j in both],
                message=f"inputs {ts.input_ids[a]!r} and {ts.input_ids[b]!r} look alike "
                        f"(similarity {block[r, c]:.3f}) but are labeled differently"))
    return sorted(out, key=lambda f: -f.score)

