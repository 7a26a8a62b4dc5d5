"""Fit one model version: validate the examples, choose the blend by cross-validation, fit the head."""

from __future__ import annotations

import time

import msgspec
import numpy as np

from loupe.errors import TrainFailure, TrainingFailed
from loupe.learning.blend import (
    DEFAULT_BLEND,
    choose_blend,
    cross_validate,
    held_out_blend,
    scaled_to,
    stratified_folds,
)
from loupe.learning.heads import (
    Head,
    MakeTargets,
    fit_head,
    logit_spread,
    targets_for,
)
from loupe.learning.near_duplicates import copy_groups
from loupe.learning.neighbours import vote_targets
from loupe.learning.semi_supervised import (
    BACKGROUND_COVERAGE,
    CONCEPT_COVERAGE,
    NOT_USED,
    FitLabelMatrices,
    SelfTraining,
    background_validated,
    lacking_negatives,
    pool_coverage,
    self_train_if_validated,
)
from loupe.learning.thresholds import choose_thresholds, scope_similarity
from loupe.learning.training_set import TrainingSet, UnlabeledRule, example_groups
from loupe.learning.values import BlendParams, ConceptThreshold

# scikit-learn's C (mean loss + ||W||^2 / (2 C n)) grows with the training set, from 1 at 10 examples
# to 8 from 80 on. On the few-shot benchmark (Caltech-101, Clothing-10; 1-16 shots) a fixed C lost
# either way: tiny sets need the stronger penalty (C=1 wins at 10 examples), larger ones the weaker one
# (C=4-16 wins by 0.5-2 points from ~40 examples, and at 1 shot of 101 concepts).
MIN_C, MAX_C, ROWS_PER_UNIT_C = 1.0, 8.0, 10.0
CV_MAX_ROWS = 800  # blend selection sees at most this many rows (random), to keep trains fast
CV_FOLDS = 3  # for choosing the blend; evaluation uses 5
# Large sets: converge on a stratified subsample first, then a few full-data steps from there.
COARSE_ROWS_PER_CONCEPT = 60
COARSE_MIN_ROWS = 2000
REFINE_ITERATIONS = 15
# A train fits on at most this many examples (a stratified sample beyond: training_set.bounded), so
# 1M x 100 concepts reads 250k vectors and fits them in bounded time and memory (benchmarks/scale.py).
MAX_TRAIN_EXAMPLES = 250_000
MIN_POSITIVES_FOR_CV = 4


class FittedVersion(msgspec.Struct):
    head: Head
    blend: BlendParams
    l2: float
    positives: dict[str, int]
    negatives: dict[str, int]
    seconds: float
    self_training: SelfTraining = NOT_USED
    unlabeled_seen: int = 0
    thresholds: list[ConceptThreshold] = []
    scope_similarity: float = 0.0


class HeldOutScores(msgspec.Struct):
    """The blend's validation: confidences of rows from heads that never saw them, with their labels."""

    scores: np.ndarray  # [n, c]
    positive: np.ndarray
    negative: np.ndarray


def regularisation_c(n_rows: int) -> float:
    return min(max(n_rows / ROWS_PER_UNIT_C, MIN_C), MAX_C)


def l2_for(n_rows: int) -> float:
    n = max(n_rows, 1)
    return 1.0 / (regularisation_c(n) * n)


def check_examples(ts: TrainingSet, concept_ids: list[str], mutually_exclusive: bool) -> None:
    if not concept_ids:
        raise TrainingFailed(TrainFailure.NO_DATA, "the model has no concepts: add at least one before training")
    if mutually_exclusive and len(concept_ids) < 2:
        raise TrainingFailed(TrainFailure.NO_DATA, "a mutually exclusive model needs at least two concepts")
    if len(ts.seqs) == 0:
        raise TrainingFailed(TrainFailure.NO_DATA, "no input is labeled with any of the model's concepts")
    pos = ts.positive.sum(axis=0)
    missing = [c for c, n in zip(concept_ids, pos) if n == 0]
    if missing:
        raise TrainingFailed(TrainFailure.NO_POSITIVES, f"concept(s) {', '.join(missing)} have no positive examples")
    if not mutually_exclusive:
        neg = ts.negative.sum(axis=0)
        lacking = [c for c, n in zip(concept_ids, neg) if n == 0]
        if lacking:
            raise TrainingFailed(
                TrainFailure.NO_DATA, f"concept(s) {', '.join(lacking)} have no negative examples: label inputs as not "
                "that concept, add inputs of other concepts, or (in an open environment) add unlabeled inputs")


def with_background(ts: TrainingSet, x: np.ndarray, pool: np.ndarray) -> tuple[TrainingSet, np.ndarray]:
    """The examples with the pool's inputs appended as negatives of every concept."""
    extra = np.zeros((len(pool), ts.positive.shape[1]), bool)
    return TrainingSet(np.concatenate([ts.seqs, np.full(len(pool), -1, np.int64)]), [*ts.input_ids, *[""] * len(pool)],
                       np.concatenate([ts.positive, extra]), np.concatenate([ts.negative, ~extra]),
                       np.concatenate([ts.explicit_negative, extra]),
                       [*ts.sha256, *[""] * len(pool)] if ts.sha256 else []), np.concatenate([x, pool])


def fit_version(x: np.ndarray, ts: TrainingSet, concept_ids: list[str], mutually_exclusive: bool, *,
                warm: Head | None = None, seed: int = 0, unlabeled: np.ndarray | None = None,
                background: bool = False, pseudo_labels: bool = True,
                target_precision: list[float] | None = None) -> FittedVersion:
    """`unlabeled`: vectors of the app's inputs that say nothing about the model (loupe.training_set),
    used only as validation on the labeled inputs says (loupe.semi_supervised). `background`: they may
    be negatives of every concept (open multi-label models). `pseudo_labels`: self-training may be tried.
    `target_precision`: per concept, what its threshold is chosen for (default 0.9)."""
    started = time.perf_counter()
    make_targets = targets_for(mutually_exclusive)
    # Nothing looks at the unlabeled inputs when self-training is off and they cannot be negatives.
    usable = unlabeled is not None and len(unlabeled) and (pseudo_labels or background)
    pool = unlabeled if usable else None
    # Copies of a photo share a fold in every validation below (the blend's groups its own sample).
    copies = copy_groups(x, ts.sha256) if pool is not None else None
    blend = DEFAULT_BLEND  # the chosen one from below on: validation heads take its temperature

    def supervised(exclusive: bool) -> FitLabelMatrices:
        make = targets_for(exclusive)

        def fit(xs: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> tuple[Head, float, float]:
            """A plain supervised head on part of the labels, as validation compares against."""
            lam = l2_for(len(xs))
            fitted = fit_head(xs, make(pos, neg), exclusive, l2=lam)
            return fitted, scaled_to(blend, logit_spread(fitted, xs)).temperature, lam
        return fit

    # `judge`: a softmax head on the same labels chooses a multi-label model's pseudo-labels.
    fit, judge = supervised(mutually_exclusive), supervised(True)

    used = NOT_USED
    if pool is None:
        used = msgspec.structs.replace(NOT_USED, reason="self-training is switched off" if unlabeled is not None
                                       and len(unlabeled) else "no unlabeled inputs")
    elif mutually_exclusive:
        used = msgspec.structs.replace(NOT_USED, reason="an unlabeled input is one of the concepts: never a "
                                                        "negative of a mutually exclusive model")
    elif background:
        if lacking := lacking_negatives(ts.negative):
            used = SelfTraining(0, 0, 0.0, UnlabeledRule.NEGATIVES, "the only negatives of " + ", ".join(
                concept_ids[j] for j in lacking) + " (no input is labeled as not it or with another concept)")
        else:
            used = _background_or_not(x, ts, pool, fit, seed, copies)
    if used.rule is UnlabeledRule.NEGATIVES:
        assert pool is not None
        ts, x = with_background(ts, x, pool)
    check_examples(ts, concept_ids, mutually_exclusive)
    # Scope: how close examples of the model's concepts are to each other (not background or other concepts).
    scope = scope_similarity(x[ts.positive.any(axis=1) | ts.explicit_negative.any(axis=1)], seed)
    blend, held = select_blend(x, ts, mutually_exclusive, make_targets, seed)
    l2 = l2_for(len(ts.seqs))
    head = fit_coarse_to_fine(x, ts, mutually_exclusive, make_targets, l2, warm, seed)
    scaled = scaled_to(blend, logit_spread(head, x))
    if pool is not None and pseudo_labels and used.rule is UnlabeledRule.IGNORED:
        # The blend's temperature for the pseudo-labels; validation folds use the default blend's.
        head, tried = self_train_if_validated(x, ts.positive, ts.negative, mutually_exclusive, head,
                                              scaled.temperature, pool, l2, fit, seed, copies, judge)
        used = msgspec.structs.replace(tried, reason=f"{used.reason}; {tried.reason}" if used.reason else tried.reason)
        if used.strength:
            scaled = scaled_to(blend, logit_spread(head, x))
    targets = target_precision or [0.9] * len(concept_ids)
    thresholds = (choose_thresholds(held.scores, held.positive, held.negative, concept_ids, mutually_exclusive,
                                    targets) if held is not None else
                  choose_thresholds(np.zeros((0, len(concept_ids))), np.zeros((0, len(concept_ids)), bool),
                                    np.zeros((0, len(concept_ids)), bool), concept_ids, mutually_exclusive, targets))
    return FittedVersion(
        head=head, blend=scaled, l2=l2, thresholds=thresholds, scope_similarity=scope,
        positives={c: int(n) for c, n in zip(concept_ids, ts.positive.sum(axis=0))},
        negatives={c: int(n) for c, n in zip(concept_ids, ts.negative.sum(axis=0))},
        seconds=time.perf_counter() - started, self_training=used,
        unlabeled_seen=0 if pool is None else len(pool))


def _background_or_not(x: np.ndarray, ts: TrainingSet, pool: np.ndarray, fit: FitLabelMatrices, seed: int,
                       copies: np.ndarray | None) -> SelfTraining:
    """Are an open multi-label model's unlabeled inputs background negatives (loupe.semi_supervised)?
    Clarifai's rule says yes; they are not where they look like the labeled examples."""
    coverage = pool_coverage(x, ts.positive, pool, seed)
    if coverage is None:
        return SelfTraining(0, 0, 0.0, UnlabeledRule.IGNORED, "one label per concept: nothing shows whether they "
                                                              "are background, so no negatives")
    if coverage < BACKGROUND_COVERAGE:
        return SelfTraining(0, 0, 0.0, UnlabeledRule.NEGATIVES, f"they look unlike the labeled examples (only "
                            f"{coverage:.1%} as close to one as examples of a concept are to each other): "
                            "background, so negatives of every concept")
    if coverage >= CONCEPT_COVERAGE:
        return SelfTraining(0, 0, 0.0, UnlabeledRule.IGNORED, f"{coverage:.0%} of them look like the labeled "
                            "examples: mostly photos of the concepts, so no negatives")
    verdict, why = background_validated(x, ts.positive, ts.negative, pool, fit, seed, copies)
    return SelfTraining(0, 0, 0.0, UnlabeledRule.NEGATIVES if verdict else UnlabeledRule.IGNORED,
                        f"{coverage:.0%} of them look like the labeled examples; {why}")


def fit_coarse_to_fine(x: np.ndarray, ts: TrainingSet, mutually_exclusive: bool, make_targets: MakeTargets, l2: float,
                       warm: Head | None, seed: int) -> Head:
    """Every step of L-BFGS reads all of x, so a large set first converges on a stratified subsample
    (same penalty per example), then takes a few steps on all rows. A warm start skips the first part."""
    targets = make_targets(ts.positive, ts.negative)
    n, c = ts.positive.shape
    coarse_rows = max(COARSE_MIN_ROWS, COARSE_ROWS_PER_CONCEPT * c)
    if warm is None and n > 2 * coarse_rows:
        groups = example_groups(ts.positive)
        rows = np.sort(np.concatenate([_sample(np.flatnonzero(groups == g), coarse_rows // (c + 1) + 1, seed)
                                       for g in range(c + 1)]))
        warm = fit_head(x[rows], make_targets(ts.positive[rows], ts.negative[rows]), mutually_exclusive, l2=l2)
        return fit_head(x, targets, mutually_exclusive, l2=l2, warm=warm, max_iter=REFINE_ITERATIONS)
    if warm is not None and n > 2 * coarse_rows:
        return fit_head(x, targets, mutually_exclusive, l2=l2, warm=warm, max_iter=REFINE_ITERATIONS)
    return fit_head(x, targets, mutually_exclusive, l2=l2, warm=warm)


def _sample(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    return rows if len(rows) <= n else np.random.default_rng(seed).choice(rows, n, replace=False)


def cv_rows(positive: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """The rows the blend's cross-validation sees: all of them up to `limit`; beyond, every concept's
    positives first (up to an equal share, at least MIN_POSITIVES_FOR_CV + 1 each, so no concept falls
    below the cross-validation minimum by chance), then a random fill up to `limit`. Drawing the rows
    at random instead left a concept of a 102-concept, 16-example model under 4 positives in 14 of 20
    row orders, and cross-validation was silently skipped."""
    n, c = positive.shape
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    share = max(MIN_POSITIVES_FOR_CV + 1, limit // max(1, c))
    chosen = np.zeros(n, bool)
    for j in range(c):
        have = np.flatnonzero(positive[:, j])
        chosen[rng.choice(have, min(share, len(have)), replace=False)] = True
    rest = np.flatnonzero(~chosen)
    fill = max(0, limit - int(chosen.sum()))
    chosen[rng.choice(rest, min(fill, len(rest)), replace=False)] = True
    return np.flatnonzero(chosen)


def select_blend(x: np.ndarray, ts: TrainingSet, mutually_exclusive: bool, make_targets: MakeTargets,
                 seed: int) -> tuple[BlendParams, HeldOutScores | None]:
    """The blend with the lowest held-out loss, and the held-out confidences it gives (None: too few
    examples to hold any out, and the default blend)."""
    rows = cv_rows(ts.positive, CV_MAX_ROWS, seed)
    sub_copies = copy_groups(x[rows], [ts.sha256[i] for i in rows] if ts.sha256 else None)
    pos, neg = ts.positive[rows], ts.negative[rows]
    min_pos = int(pos.sum(axis=0).min()) if pos.size else 0
    if min_pos < MIN_POSITIVES_FOR_CV:
        return DEFAULT_BLEND, None  # held-out folds this small choose noise, not a better blend
    folds = min(CV_FOLDS, min_pos)
    held = cross_validate(x[rows], pos, neg, make_targets, mutually_exclusive=mutually_exclusive,
                          l2_of=l2_for, fold=stratified_folds(pos, folds, seed, sub_copies), max_iter=40)
    params, _ = choose_blend(held, pos, neg, make_targets(pos, neg), mutually_exclusive)
    votes, voting = vote_targets(pos, neg, mutually_exclusive)
    return params, HeldOutScores(held_out_blend(held, params, votes, voting, mutually_exclusive), pos, neg)
