"""Learning from the app's unlabeled inputs, for every model kind: class-balanced self-training (and,
for open multi-label models, background negatives), switched on by validation on the labeled inputs,
never blindly. What a train did with them is recorded on the version (`SelfTraining.rule`, `.reason`).

Single-label examples (every labeled input carries one of the model's concepts; mutually exclusive
models always, multi-label ones when their labels happen to be so): the head labels the unlabeled
pool; each concept takes its `strength` x (its labeled count) most confident members as pseudo-labels
at half weight (so a big concept in a skewed pool cannot swallow the rest), each read as a label of
that concept is read (in an open environment, a negative of the others), and the head is fitted again
on both. The strength is chosen per train:
- with 3 or more labels per concept: stratified cross-validation on the labeled inputs, each fold
  self-training from its own training part; a strength is used only if it beats none by 4 points of
  held-out accuracy, 6 from 8 labels per concept (smaller differences were selection noise: with a
  2-point margin, 8-16 labels per concept picked a strength that then lost on unseen photos);
- with exactly 2 labels per concept the same folds hold out one label per concept, too few to show a
  gain, while every fold trains in the 1-label regime where self-training helped on every benchmark
  set; so the best strength is used unless it loses to none by 5 points on the held-out labels;
- with 1 label per concept there is nothing to hold out, so the check is reversed: a head fitted on
  the pseudo-labels alone must give back the people's labels (>= 95 % of them), else none is used.
Margins chosen on seeds 0-4, 100-104 and 200-204 of benchmarks/few_shot.py; docs/benchmarks.md reports seeds
300-309, which they never saw.

Multi-label examples (some input carries two of the concepts): each concept takes its own most
confident pool members as positives and as many confident "no"s as negatives (cross-validated mean
average precision, 2-point margin; not below 2 positives per concept).

Background negatives (open multi-label models only; Clarifai takes every unlabeled input as one): a
concept with no labeled negative (a "defect" model in an app of unlabeled normal photos) has only the
unlabeled inputs to learn "no" from, so they are its negatives; otherwise `pool_coverage` says whether
they look like the labeled examples: if hardly any do they are negatives, if most do they are not (and
self-training is tried), in between they stay negatives unless cross-validation on the labeled inputs
shows them costing (`background_validated`).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import numpy as np

from loupe.learning.blend import stratified_folds
from loupe.learning.dot_products import pairwise_dots
from loupe.learning.heads import Head, Targets, fit_head, head_probabilities, ovr_targets, targets_for
from loupe.learning.metrics import average_precision
from loupe.learning.training_set import UnlabeledRule

STRENGTHS = (0, 2, 4, 8)  # pseudo-labels per concept, as a multiple of its labeled count
PSEUDO_WEIGHT = 0.5
CV_MARGIN = 0.04
# From 8 labels per concept the gains to find are small and a 4-point margin let noise through: on the 15
# tuning seeds (0-4, 100-104, 200-204) of Clothing-10 at 16 shots it switched self-training on once and
# lost 2.4 points; 6 points kept it off there and chose alike at 4-8 shots (Caltech-101's 4-shot gains
# of 1-2 points need the 4-point margin: 6 lost one of them).
CV_MARGIN_MANY, MANY_SHOTS = 0.06, 8
TWO_SHOT_TOLERANCE = 0.05
OVR_CV_MARGIN = 0.02  # of mean average precision (multi-label models; measured with this one)
REVERSE_AGREEMENT = 0.95
MAX_UNLABELED = 50_000
# Unlabeled inputs tried as negatives in each validation fold (a fixed sample): class-balanced weights
# give a concept's negatives as much weight in total whatever their number, so a sample shows the effect.
VALIDATION_BACKGROUND = 2000
# With 2 labels per concept each fold holds out one per concept: too few to tell (on Clothing-10, seeds
# 400-404, such a fold once "validated" negatives by 4 points and the model lost 15 on unseen photos).
BACKGROUND_MIN_SHOTS = 3
# Are the unlabeled inputs mostly photos of the model's concepts, or mostly of other things (a "defect"
# model among normal photos)? Coverage: the share of the pool at least as close to some labeled example
# as the 25th percentile of how close the labeled examples are to their own concept's nearest other
# example (not known with one label per concept). Measured on seeds 0-1 and draws 0-3
# (benchmarks/few_shot.py, rare_concept.py) at 2-5 labels: 0.85-0.99 when every pool photo is of some
# concept, 0.002-0.014 for a rare concept (and a common one) among Caltech-101's
# other photos. Below the line the unlabeled inputs are background: negatives of every concept
# (labeled-only validation cannot see this: it kept them out 20 of 20 times at 10 rare labels, and F1
# fell from 0.61 to 0.08). Between the lines (a common concept with hundreds of unlabeled photos next
# to a rare one: 5 of 20 draws) they stay negatives unless the labeled inputs show them costing.
COVERAGE_QUANTILE = 0.25
BACKGROUND_COVERAGE = 0.05
# Above this the pool is mostly photos of the concepts and negatives are wrong by construction: the
# labeled-only check (6 fits) is run only in between.
CONCEPT_COVERAGE = 0.5
COVERAGE_POOL, COVERAGE_LABELED = 5000, 1000  # samples: the estimate costs ~0.1 s at most

# fit(x, positive, negative) -> (head, temperature, l2): a supervised head on these labels, as a train fits it.
FitLabelMatrices = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[Head, float, float]]
# The same for a softmax head, whose scores choose the pseudo-labels of a multi-label model whose examples
# are single-label: read as one choice among the concepts they are the better judge of which concept
# (Clothing-10, 1 label per concept, seeds 0-4: an OvR head's own choice lost 3 points to the probe).
Judge = FitLabelMatrices


class SelfTraining(msgspec.Struct, frozen=True):
    strength: int  # 0: no pseudo-labels
    pseudo_labels: int
    weight: float
    rule: UnlabeledRule = UnlabeledRule.IGNORED
    reason: str = ""


NOT_USED = SelfTraining(strength=0, pseudo_labels=0, weight=0.0)


def single_label(positive: np.ndarray) -> bool:
    """Every input that names one of the concepts names exactly one."""
    return bool((positive.sum(axis=1) <= 1).all())


def lacking_negatives(negative: np.ndarray) -> list[int]:
    """The concepts no example is a negative of."""
    return [int(j) for j in np.flatnonzero(negative.sum(axis=0) == 0)]


def pool_coverage(x: np.ndarray, positive: np.ndarray, pool: np.ndarray, seed: int = 0) -> float | None:
    """The share of the pool that looks like the labeled examples (see BACKGROUND_COVERAGE); None with
    one label per concept (nothing to say how alike a concept's photos are: a pool photo's nearest
    neighbours are no stand-in, an app of burst shots made them all copies)."""
    rows = np.flatnonzero(positive.any(axis=1))
    rows = rows[_sample(len(rows), COVERAGE_LABELED, seed)]
    if not len(rows) or not len(pool):
        return 0.0
    xl, pl = x[rows], positive[rows].astype(np.float32)
    to_pool = pairwise_dots(xl, pool[_sample(len(pool), COVERAGE_POOL, seed)])
    among = pairwise_dots(xl, xl)
    np.fill_diagonal(among, -2.0)
    within = np.where(pl @ pl.T > 0, among, -2.0).max(axis=1)  # nearest other example of its concept
    reference = within[within > -2.0]
    if not len(reference):
        return None
    return float((to_pool.max(axis=0) >= np.quantile(reference, COVERAGE_QUANTILE)).mean())


def background_validated(x: np.ndarray, positive: np.ndarray, negative: np.ndarray, pool: np.ndarray,
                         fit: FitLabelMatrices, seed: int = 0, copies: np.ndarray | None = None) -> tuple[bool, str]:
    """May the unlabeled inputs stay negatives of every concept (open multi-label model, Clarifai's rule)?
    Yes unless cross-validation on the labeled inputs, each fold with and without a sample of the pool as
    negatives, shows them costing at least the margin: labeled inputs alone cannot show what negatives
    gain (telling the concepts from everything else), only what they cost."""
    shots = int(positive.sum(axis=0).min()) if positive.size else 0
    if shots < BACKGROUND_MIN_SHOTS:
        return True, (f"fewer than {BACKGROUND_MIN_SHOTS} labels of some concept: too few to show that they "
                      "cost as negatives")
    k = min(3, shots)
    fold = stratified_folds(positive, k, seed, copies)
    bg = pool[_sample(len(pool), VALIDATION_BACKGROUND, seed)]
    held = {False: np.zeros(positive.shape, np.float32), True: np.zeros(positive.shape, np.float32)}
    for f in range(k):
        train, test = fold != f, fold == f
        plain = fit(x[train], positive[train], negative[train])[0]
        extra = np.zeros((len(bg), positive.shape[1]), bool)
        with_bg = fit(np.concatenate([x[train], bg]), np.concatenate([positive[train], extra]),
                      np.concatenate([negative[train], ~extra]))[0]
        held[False][test] = plain.logits(x[test])
        held[True][test] = with_bg.logits(x[test])
    if single_label(positive):
        rows = positive.any(axis=1)
        labels = positive[rows].argmax(axis=1)
        score = {use: float((h[rows].argmax(axis=1) == labels).mean()) for use, h in held.items()}
        margin, what = CV_MARGIN, "held-out accuracy"
    else:
        score = {use: mean_average_precision(h, positive, negative) for use, h in held.items()}
        margin, what = OVR_CV_MARGIN, "held-out mean average precision"
    verdict = score[False] < score[True] + margin
    return verdict, (f"{what} {score[True]:.3f} with them as negatives, {score[False]:.3f} without "
                     f"({'less than' if verdict else 'at least'} the {margin:.2f} margin in favour of none)")


def self_train_if_validated(x: np.ndarray, positive: np.ndarray, negative: np.ndarray, mutually_exclusive: bool,
                            head: Head, temperature: float, pool: np.ndarray, l2: float, fit: FitLabelMatrices,
                            seed: int = 0, copies: np.ndarray | None = None,
                            judge: Judge | None = None) -> tuple[Head, SelfTraining]:
    """The head refitted with pseudo-labels from `pool` if validation on the labeled inputs says they
    help, else `head` as it is; and what was used, and why. `judge`: fits a softmax head on the same labels,
    which chooses the pseudo-labels of a multi-label model with single-label examples."""
    if single_label(positive):
        judge = None if mutually_exclusive else judge
        strength, why = choose_strength(x, positive, negative, mutually_exclusive, pool, fit, seed, copies, judge)
        if strength:
            chooser = judge(x, positive, negative)[:2] if judge is not None else None
            head, n = self_train(x, positive, negative, mutually_exclusive, head, temperature, pool, strength, l2,
                                 judged=chooser)
    elif mutually_exclusive:
        return head, msgspec.structs.replace(NOT_USED, reason="some inputs carry two of the model's concepts: "
                                                              "no pseudo-labels for a mutually exclusive model")
    else:
        strength, why = choose_strength_ovr(x, positive, negative, pool, fit, seed, copies)
        if strength:
            head, n = self_train_ovr(x, positive, negative, head, temperature, pool, strength, l2)
    if not strength:
        return head, msgspec.structs.replace(NOT_USED, reason=why)
    return head, SelfTraining(strength=strength, pseudo_labels=n, weight=PSEUDO_WEIGHT,
                              rule=UnlabeledRule.PSEUDO_LABELS, reason=why)


def pseudo_labels(head: Head, temperature: float, pool: np.ndarray, per_concept: np.ndarray,
                  strength: int, p: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `pool` and their concepts: each concept's most confident members (the head's scores read
    as one choice among the concepts), as many as strength x its labeled count. `p`: the head's
    probabilities on the pool, if already computed."""
    p = head_probabilities(head.logits(pool), True, temperature) if p is None else p
    best = p.argmax(axis=1)
    rows, concepts = [], []
    for j, n in enumerate(per_concept.tolist()):
        members = np.flatnonzero(best == j)
        take = members[np.argsort(-p[members, j], kind="stable")][:strength * n]
        rows.append(take)
        concepts.append(np.full(len(take), j))
    return np.concatenate(rows).astype(np.int64), np.concatenate(concepts).astype(np.int64)


def self_train(x: np.ndarray, positive: np.ndarray, negative: np.ndarray, mutually_exclusive: bool, head: Head,
               temperature: float, pool: np.ndarray, strength: int, l2: float,
               p: np.ndarray | None = None, judged: tuple[Head, float] | None = None) -> tuple[Head, int]:
    """The head refitted on the labeled rows plus the pool's pseudo-labels (single-label examples),
    chosen by `head` or by the `judged` (softmax head, temperature)."""
    c = head.weights.shape[0]
    chooser, t = judged if judged is not None else (head, temperature)
    rows, concepts = pseudo_labels(chooser, t, pool, positive.sum(axis=0), strength, p)
    if not len(rows):
        return head, 0
    one_hot = np.eye(c, dtype=bool)[concepts]
    targets = targets_for(mutually_exclusive)(np.concatenate([positive, one_hot]),
                                              np.concatenate([negative, ~one_hot]))
    weights = targets.weights.copy()
    weights[len(positive):] *= PSEUDO_WEIGHT
    fitted = fit_head(np.concatenate([x, pool[rows]]), Targets(targets.values, weights), mutually_exclusive,
                      l2=l2, warm=head)
    return fitted, len(rows)


def choose_strength(x: np.ndarray, positive: np.ndarray, negative: np.ndarray, mutually_exclusive: bool,
                    pool: np.ndarray, fit: FitLabelMatrices, seed: int = 0,
                    copies: np.ndarray | None = None, judge: Judge | None = None) -> tuple[int, str]:
    """The strength for single-label examples (0: none), and why. Inputs with no positive (an open
    environment's negatives) train every fold and are not scored. `judge`: what chooses the pseudo-labels
    (None: the head itself)."""
    c = positive.shape[1]
    labeled = positive.any(axis=1)
    labels = positive[labeled].argmax(axis=1)
    counts = positive.sum(axis=0)
    shots = int(counts.min())
    if shots < 1 or not len(pool):
        return 0, "no unlabeled inputs" if not len(pool) else "a concept has no labels"
    if shots == 1:
        head, temperature, l2 = (judge or fit)(x, positive, negative)
        strength = max(STRENGTHS)
        rows, concepts = pseudo_labels(head, temperature, pool, counts, strength)
        if len(np.unique(concepts)) < c:
            return 0, "1 label per concept, and some concept got no pseudo-labels"
        one_hot = np.eye(c, dtype=bool)[concepts]
        reverse = fit_head(pool[rows], targets_for(mutually_exclusive)(one_hot, ~one_hot), mutually_exclusive, l2=l2)
        agreement = float((reverse.logits(x[labeled]).argmax(axis=1) == labels).mean())
        verdict = agreement >= REVERSE_AGREEMENT
        return (strength if verdict else 0), (
            f"1 label per concept: a model of the pseudo-labels alone gives back {agreement:.0%} of the labels "
            f"({'at least' if verdict else 'less than'} {REVERSE_AGREEMENT:.0%})")
    k = min(3, shots)
    fold = stratified_folds(positive, k, seed, copies)
    correct = dict.fromkeys(STRENGTHS, 0)
    for f in range(k):  # each fold's supervised head and its pool probabilities serve every strength
        train, test = fold != f, (fold == f) & labeled
        supervised, temperature, l2 = fit(x[train], positive[train], negative[train])
        chooser, t = (judge(x[train], positive[train], negative[train])[:2] if judge is not None
                      else (supervised, temperature))
        p = head_probabilities(chooser.logits(pool), True, t)
        for strength in STRENGTHS:
            head = (self_train(x[train], positive[train], negative[train], mutually_exclusive, supervised,
                               temperature, pool, strength, l2, p)[0] if strength else supervised)
            correct[strength] += int((head.logits(x[test]).argmax(axis=1) == positive[test].argmax(axis=1)).sum())
    scores = {strength: n / len(labels) for strength, n in correct.items()}
    strength = strength_from_scores(scores, shots)
    return strength, (f"{shots} labels per concept: held-out accuracy " + ", ".join(
        f"{scores[s]:.3f} at strength {s}" for s in STRENGTHS) + (
        "; " + ("the best strength unless it loses 5 points" if shots == 2 else
                f"a {round(100 * (CV_MARGIN if shots < MANY_SHOTS else CV_MARGIN_MANY))}-point gain needed")))


def strength_from_scores(scores: dict[int, float], shots: int) -> int:
    """The strength to use, from held-out accuracy per strength (0: none) at `shots` labels per concept."""
    if shots == 2:
        return _best_unless_below(scores, -TWO_SHOT_TOLERANCE)
    return _best_unless_below(scores, CV_MARGIN if shots < MANY_SHOTS else CV_MARGIN_MANY)


def _best_unless_below(scores: dict[int, float], margin: float) -> int:
    """The best-scoring strength above 0 (ties: the weaker) if it scores at least none's + `margin`, else 0."""
    best = max((s for s in scores if s), key=lambda s: (scores[s], -s))
    return best if scores[best] >= scores[0] + margin else 0


def _sample(n: int, limit: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))

# ---------------------------------------------------------------- multi-label examples
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
                        fit: FitLabelMatrices, seed: int = 0, copies: np.ndarray | None = None) -> tuple[int, str]:
    shots = int(positive.sum(axis=0).min()) if positive.size else 0
    if shots < 2 or not len(pool):
        return 0, "no unlabeled inputs" if not len(pool) else "fewer than 2 labels of some concept to validate on"
    k = min(3, shots)
    fold = stratified_folds(positive, k, seed, copies)
    held_out = {strength: np.zeros(positive.shape, np.float32) for strength in STRENGTHS}
    for f in range(k):  # each fold's supervised head serves every strength
        train, test = fold != f, fold == f
        supervised, temperature, l2 = fit(x[train], positive[train], negative[train])
        for strength in STRENGTHS:
            head = (self_train_ovr(x[train], positive[train], negative[train], supervised, temperature, pool,
                                   strength, l2)[0] if strength else supervised)
            held_out[strength][test] = head.logits(x[test])
    scores = {strength: mean_average_precision(h, positive, negative) for strength, h in held_out.items()}
    return _best_unless_below(scores, OVR_CV_MARGIN), ("held-out mean average precision " + ", ".join(
        f"{scores[s]:.3f} at strength {s}" for s in STRENGTHS) + "; a 2-point gain needed")
