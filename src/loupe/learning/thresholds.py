"""Per-concept thresholds for a target precision, and the similarity below which an image is out of scope.

Concepts differ in how separable they are, so one global `min_value` is too strict for some and too
loose for others. Each version picks, per concept, the lowest confidence at which its held-out
cross-validation predictions (the blend's own validation at train time: models that never saw those
rows) reach the target precision, and records the precision and recall it saw there. A prediction then
*meets* a concept at or above its threshold, and is "unsure" when it meets none or when its nearest
labeled example is less similar than the version's scope similarity.

The precision curve is read from the top down and the threshold stops where it first falls below
the target (PRECISION_PRIOR smooths it). What a threshold promises is the held-out precision there,
shrunk toward the target by EXPECTATION_PRIOR pseudo-predictions: with 5-20 labeled photos per concept
the raw held-out precision at the chosen threshold was 0.96-1.0 while new photos gave 0.90-0.97
(benchmarks/thresholds.py; docs/models.md has the seeds and the measured gap).
"""

from __future__ import annotations

import numpy as np

from loupe.learning.dot_products import pairwise_dots
from loupe.learning.values import ConceptThreshold

# A concept's precision at a threshold counts this many pseudo-predictions at the target precision:
# it keeps a run of 2-3 lucky rows from passing for certainty.
PRECISION_PRIOR = 2.0
# Chosen on seeds 0-2 of benchmarks/thresholds.py among 0, 2, 5, 10, 20 (largest |expected - observed|
# over both datasets, both model kinds and 5/10/20 shots: 0.10, 0.069, 0.047, 0.038, 0.052).
EXPECTATION_PRIOR = 10.0
MIN_SUPPORT = 3  # fewer held-out predictions than this at a threshold measure nothing
DEFAULT_THRESHOLD = 0.5  # multi-label concepts without held-out scores (mutually exclusive: the top one)
SCOPE_PERCENTILE = 5.0
# Labeled rows whose nearest other row is measured, and the rows searched for it (random samples beyond):
# bounded cost per train (1,000 x 10,000 x 1280 multiply-adds, ~0.1 s), whatever the set's size.
SCOPE_SAMPLE = 1000
SCOPE_REFERENCE = 10_000
COPY_SIMILARITY = 0.98  # copies of one photo are not "the nearest other example"


def choose_thresholds(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray, concept_ids: list[str],
                      mutually_exclusive: bool, targets: list[float]) -> list[ConceptThreshold]:
    """scores [n, c]: held-out confidences; positive/negative [n, c]: the labels. For a mutually exclusive
    model a concept is predicted where it is the top one, and the threshold applies to its confidence."""
    top = scores.argmax(axis=1) if len(scores) else np.zeros(0, np.int64)
    out = []
    for j, concept in enumerate(concept_ids):
        if mutually_exclusive:
            predicted = top == j
            known = positive.any(axis=1)
        else:
            predicted = np.ones(len(scores), bool)
            known = positive[:, j] | negative[:, j]
        rows = predicted & known
        out.append(_threshold(concept, scores[rows, j], positive[rows, j], int(positive[known, j].sum()),
                              targets[j], 0.0 if mutually_exclusive else DEFAULT_THRESHOLD))
    return out


def _threshold(concept: str, s: np.ndarray, y: np.ndarray, positives: int, target: float,
               default: float) -> ConceptThreshold:
    if positives == 0 or len(s) < MIN_SUPPORT:
        return ConceptThreshold(concept_id=concept, threshold=default, target=target)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    n = np.arange(1, len(s) + 1)
    # Only the last row of a run of equal scores is a threshold (a threshold takes all of them).
    last = np.append(s[1:] != s[:-1], True)
    smoothed = (tp + PRECISION_PRIOR * target) / (n + PRECISION_PRIOR)
    ok = (smoothed >= target) & (n >= MIN_SUPPORT)
    # From the top down, up to where the smoothed precision first falls below the target.
    below = np.flatnonzero(~ok & (n >= MIN_SUPPORT))
    end = below[0] if len(below) else len(s)
    candidates = np.flatnonzero(ok[:end] & last[:end])
    if len(candidates):
        i, reachable = int(candidates[-1]), True
    else:  # the target is out of reach: the threshold with the best precision (enough support)
        precision = tp / n
        usable = np.flatnonzero(last & (n >= MIN_SUPPORT))
        i, reachable = int(usable[np.argmax(precision[usable])]), False
    # Shrunk toward the target (never up: an unreachable target promises only what was seen).
    prior = min(target, float(tp[i] / n[i]))
    expected = (tp[i] + EXPECTATION_PRIOR * prior) / (n[i] + EXPECTATION_PRIOR)
    return ConceptThreshold(concept_id=concept, threshold=round(float(s[i]), 6), target=target,
                            precision=round(float(expected), 4), recall=round(float(tp[i] / positives), 4),
                            support=int(n[i]), reachable=reachable,
                            held_out_precision=round(float(tp[i] / n[i]), 4))


def scope_similarity(x: np.ndarray, seed: int = 0) -> float:
    """The SCOPE_PERCENTILE-th percentile of each labeled example's similarity to its nearest other one
    (copies skipped): held-out photos of a model's own concepts are mostly above it."""
    if len(x) < 3:
        return 0.0
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), SCOPE_SAMPLE, replace=False) if len(x) > SCOPE_SAMPLE else np.arange(len(x))
    reference = x[np.sort(rng.choice(len(x), SCOPE_REFERENCE, replace=False))] if len(x) > SCOPE_REFERENCE else x
    nearest = np.full(len(rows), -1.0, np.float32)
    for start in range(0, len(rows), 1024):
        chunk = rows[start:start + 1024]
        s = pairwise_dots(x[chunk], reference)
        s[s >= COPY_SIMILARITY] = -1.0  # itself and its copies
        nearest[start:start + len(chunk)] = s.max(axis=1)
    nearest = nearest[nearest > -1.0]
    return round(float(np.percentile(nearest, SCOPE_PERCENTILE)), 4) if len(nearest) else 0.0
