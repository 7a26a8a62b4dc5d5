"""Learning from the app's unlabeled inputs: class-balanced self-training, switched on and sized by
validation on the labeled inputs, never blindly.

The head labels the unlabeled pool; each concept takes its `strength` x (its labeled count) most
confident members as pseudo-labels at half weight (so a big concept in a skewed pool cannot swallow
the rest), and the head is fitted again on both. The strength is chosen per train:
- with 3 or more labels per concept: stratified cross-validation on the labeled inputs, each fold
  self-training from its own training part; a strength is used only if it beats none by 4 points of
  held-out accuracy (smaller differences were selection noise: with a 2-point margin, 8-16 labels per
  concept picked a strength that then lost on unseen photos);
- with exactly 2 labels per concept the same folds hold out one label per concept, too few to show a
  gain, while every fold trains in the 1-label regime where self-training helped on every benchmark
  set; so the best strength is used unless it loses to none by 5 points on the held-out labels;
- with 1 label per concept there is nothing to hold out, so the check is reversed: a head fitted on
  the pseudo-labels alone must give back the people's labels (>= 95 % of them), else none is used.
Margins chosen on seeds 0-4, 100-104 and 200-204 of benchmarks/few_shot.py; README reports seeds
300-309, which they never saw.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import numpy as np

from loupe.blend import stratified_folds
from loupe.heads import Head, Targets, exclusive_targets, fit_head, head_probabilities, ovr_targets
from loupe.metrics import average_precision
from loupe.training_set import TrainingSet

STRENGTHS = (0, 2, 4, 8)  # pseudo-labels per concept, as a multiple of its labeled count
PSEUDO_WEIGHT = 0.5
CV_MARGIN = 0.04
TWO_SHOT_TOLERANCE = 0.05
OVR_CV_MARGIN = 0.02  # of mean average precision (multi-label models; measured with this one)
REVERSE_AGREEMENT = 0.95
MAX_UNLABELED = 50_000

# fit(x, labels) -> (head, temperature, l2): the supervised head, fitted as a train fits it.
FitLabeled = Callable[[np.ndarray, np.ndarray], tuple[Head, float, float]]
# fit(x, positive, negative) -> (head, temperature, l2): the same from label matrices (any model kind).
FitLabelMatrices = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[Head, float, float]]


class SelfTraining(msgspec.Struct, frozen=True):
    strength: int  # 0: the unlabeled inputs were not used
    pseudo_labels: int
    weight: float


NOT_USED = SelfTraining(strength=0, pseudo_labels=0, weight=0.0)


def self_train_if_validated(x: np.ndarray, ts: TrainingSet, mutually_exclusive: bool, head: Head,
                            temperature: float, pool: np.ndarray, l2: float, fit: FitLabelMatrices,
                            seed: int = 0) -> tuple[Head, SelfTraining]:
    """The head refitted with pseudo-labels from `pool` if validation on the labeled inputs says they
    help, else `head` as it is; and what was used. Mutually exclusive models self-train only when
    every example has one concept (the pseudo-labels are single concepts too)."""
    if mutually_exclusive:
        if not (ts.positive.sum(axis=1) == 1).all():
            return head, NOT_USED
        labels = ts.positive.argmax(axis=1)
        one_hot = np.eye(ts.positive.shape[1], dtype=bool)
        strength = choose_strength(x, labels, pool, lambda xs, ys: fit(xs, one_hot[ys], ~one_hot[ys]), seed)
        if not strength:
            return head, NOT_USED
        head, n = self_train(x, labels, head, temperature, pool, strength, l2)
    else:
        strength = choose_strength_ovr(x, ts.positive, ts.negative, pool, fit, seed)
        if not strength:
            return head, NOT_USED
        head, n = self_train_ovr(x, ts.positive, ts.negative, head, temperature, pool, strength, l2)
    return head, SelfTraining(strength=strength, pseudo_labels=n, weight=PSEUDO_WEIGHT)


def pseudo_labels(head: Head, temperature: float, pool: np.ndarray, per_concept: np.ndarray,
                  strength: int, p: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `pool` and their concepts: each concept's most confident members, as many as
    strength x its labeled count. `p`: the head's probabilities on the pool, if already computed."""
    p = head_probabilities(head.logits(pool), True, temperature) if p is None else p
    best = p.argmax(axis=1)
    rows, concepts = [], []
    for j, n in enumerate(per_concept.tolist()):
        members = np.flatnonzero(best == j)
        take = members[np.argsort(-p[members, j], kind="stable")][:strength * n]
        rows.append(take)
        concepts.append(np.full(len(take), j))
    return np.concatenate(rows).astype(np.int64), np.concatenate(concepts).astype(np.int64)


def self_train(x: np.ndarray, labels: np.ndarray, head: Head, temperature: float, pool: np.ndarray,
               strength: int, l2: float, p: np.ndarray | None = None) -> tuple[Head, int]:
    """The head refitted on the labeled rows plus the pool's pseudo-labels (mutually exclusive)."""
    c = head.weights.shape[0]
    per_concept = np.bincount(labels, minlength=c)
    rows, concepts = pseudo_labels(head, temperature, pool, per_concept, strength, p)
    if not len(rows):
        return head, 0
    all_labels = np.concatenate([labels, concepts])
    targets = exclusive_targets(np.eye(c, dtype=bool)[all_labels], np.zeros((len(all_labels), c), bool))
    weights = targets.weights.copy()
    weights[len(labels):] *= PSEUDO_WEIGHT
    fitted = fit_head(np.concatenate([x, pool[rows]]), Targets(targets.values, weights), True, l2=l2, warm=head)
    return fitted, len(rows)


def choose_strength(x: np.ndarray, labels: np.ndarray, pool: np.ndarray, fit: FitLabeled, seed: int = 0) -> int:
    """`fit(x, labels) -> (head, temperature, l2)` fits the supervised head as a train does."""
    c = int(labels.max()) + 1
    shots = int(np.bincount(labels, minlength=c).min())
    if shots < 1 or not len(pool):
        return 0
    if shots == 1:
        head, temperature, l2 = fit(x, labels)
        strength = max(STRENGTHS)
        rows, concepts = pseudo_labels(head, temperature, pool, np.bincount(labels, minlength=c), strength)
        if len(np.unique(concepts)) < c:
            return 0
        reverse = fit_head(pool[rows], exclusive_targets(np.eye(c, dtype=bool)[concepts],
                                                         np.zeros((len(rows), c), bool)), True, l2=l2)
        agreement = float((reverse.logits(x).argmax(axis=1) == labels).mean())
        return strength if agreement >= REVERSE_AGREEMENT else 0
    k = min(3, shots)
    fold = stratified_folds(np.eye(c, dtype=bool)[labels], k, seed)
    correct = dict.fromkeys(STRENGTHS, 0)
    for f in range(k):  # each fold's supervised head and its pool probabilities serve every strength
        train, test = fold != f, fold == f
        supervised, temperature, l2 = fit(x[train], labels[train])
        p = head_probabilities(supervised.logits(pool), True, temperature)
        for strength in STRENGTHS:
            head = (self_train(x[train], labels[train], supervised, temperature, pool, strength, l2, p)[0]
                    if strength else supervised)
            correct[strength] += int((head.logits(x[test]).argmax(axis=1) == labels[test]).sum())
    return strength_from_scores({strength: n / len(labels) for strength, n in correct.items()}, shots)


def strength_from_scores(scores: dict[int, float], shots: int) -> int:
    """The strength to use, from held-out accuracy per strength (0: none) at `shots` labels per concept."""
    if shots == 2:
        return _best_unless_below(scores, -TWO_SHOT_TOLERANCE)
    return _best_unless_below(scores, CV_MARGIN)


def _best_unless_below(scores: dict[int, float], margin: float) -> int:
    """The best-scoring strength above 0 (ties: the weaker) if it scores at least none's + `margin`, else 0."""
    best = max((s for s in scores if s), key=lambda s: (scores[s], -s))
    return best if scores[best] >= scores[0] + margin else 0

# ---------------------------------------------------------------- multi-label (one-vs-rest) models
# Each concept is its own yes/no question, so each takes pseudo-labels on its own: its `strength` x
# (labeled positives) most confident pool members as positives and as many of the most confidently
# "no" as negatives, at half weight; every other (input, concept) pair of the pool stays unknown
# (weight 0). The strength is chosen by stratified cross-validation on the labeled inputs, scored by
# mean average precision over the concepts, with a 2-point margin; with fewer than 2 positives
# for some concept there is nothing to validate on, and none is used.


def pseudo_labels_ovr(head: Head, temperature: float, pool: np.ndarray, positives: np.ndarray,
                      strength: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of `pool` that got a pseudo-label for some concept, with bool [rows, c] positive/negative."""
    p = head_probabilities(head.logits(pool), False, temperature)
    m, c = p.shape
    pos = np.zeros((m, c), bool)
    neg = np.zeros((m, c), bool)
    for j, n in enumerate(positives.tolist()):
        take = strength * n
        yes = np.flatnonzero(p[:, j] > 0.5)
        no = np.flatnonzero(p[:, j] < 0.5)
        pos[yes[np.argsort(-p[yes, j], kind="stable")][:take], j] = True
        neg[no[np.argsort(p[no, j], kind="stable")][:take], j] = True
    rows = np.flatnonzero(pos.any(axis=1) | neg.any(axis=1))
    return rows, pos[rows], neg[rows]


def self_train_ovr(x: np.ndarray, positive: np.ndarray, negative: np.ndarray, head: Head, temperature: float,
                   pool: np.ndarray, strength: int, l2: float) -> tuple[Head, int]:
    """The one-vs-rest head refitted on the labeled rows plus the pool's pseudo-labels."""
    rows, pos, neg = pseudo_labels_ovr(head, temperature, pool, positive.sum(axis=0), strength)
    if not len(rows):
        return head, 0
    labeled, pseudo = ovr_targets(positive, negative), ovr_targets(pos, neg)
    targets = Targets(np.concatenate([labeled.values, pseudo.values]),
                      np.concatenate([labeled.weights, pseudo.weights * PSEUDO_WEIGHT]))
    fitted = fit_head(np.concatenate([x, pool[rows]]), targets, False, l2=l2, warm=head)
    return fitted, int(pos.sum() + neg.sum())


def mean_average_precision(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """Mean over concepts (those with a known positive and negative) of average precision."""
    values = []
    for j in range(positive.shape[1]):
        known = positive[:, j] | negative[:, j]
        if (~positive[known, j]).any() and (ap := average_precision(positive[known, j], scores[known, j])) is not None:
            values.append(ap)
    return float(np.mean(values)) if values else 0.0


def choose_strength_ovr(x: np.ndarray, positive: np.ndarray, negative: np.ndarray, pool: np.ndarray,
                        fit: FitLabelMatrices, seed: int = 0) -> int:
    shots = int(positive.sum(axis=0).min()) if positive.size else 0
    if shots < 2 or not len(pool):
        return 0
    k = min(3, shots)
    fold = stratified_folds(positive, k, seed)
    held_out = {strength: np.zeros(positive.shape, np.float32) for strength in STRENGTHS}
    for f in range(k):  # each fold's supervised head serves every strength
        train, test = fold != f, fold == f
        supervised, temperature, l2 = fit(x[train], positive[train], negative[train])
        for strength in STRENGTHS:
            head = (self_train_ovr(x[train], positive[train], negative[train], supervised, temperature, pool,
                                   strength, l2)[0] if strength else supervised)
            held_out[strength][test] = head.logits(x[test])
    scores = {strength: mean_average_precision(h, positive, negative) for strength, h in held_out.items()}
    return _best_unless_below(scores, OVR_CV_MARGIN)
