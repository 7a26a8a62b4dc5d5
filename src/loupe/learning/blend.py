"""Blend head probabilities with neighbour evidence; choose the blend by cross-validation."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import msgspec
import numpy as np

from loupe.learning.dot_products import pairwise_dots
from loupe.learning.heads import Head, MakeTargets, Targets, fit_head, head_probabilities, logit_spread
from loupe.learning.neighbours import Evidence, evidence, vote_targets
from loupe.learning.training_set import example_groups
from loupe.learning.values import BlendParams

# Used when there are too few examples to hold any out: the head leads (it beats kNN at 1-3 shots),
# a near duplicate (w ~ 1) still moves an answer by a quarter, a neighbour at similarity 0.9 by 0.14/3.
# Its temperature: on both benchmark datasets, at 1-8 shots, the held-out log loss is lowest at 0.3-0.45
# times the head's logit spread on its training rows (while absolute optima span 0.07-0.43).
DEFAULT_BLEND = BlendParams(head_weight=3.0, k=10, sharpness=20.0, relative_temperature=0.4)
# Capped at 3 so that a near duplicate's label always moves the answer (instant label edits).
HEAD_WEIGHTS = (0.1, 0.3, 1.0, 3.0)
KS = (3, 10, 25)
SHARPNESS = (2.0, 5.0, 10.0, 20.0, 50.0)
RELATIVE_TEMPERATURES = (0.2, 0.3, 0.4, 0.55, 0.75, 1.0)  # x the head's logit spread (see logit_spread)


def blend(head_probs: np.ndarray, ev: Evidence, head_weight: float) -> np.ndarray:
    """Head as a prior worth `head_weight`, neighbours adding their weight. Stays in [0, 1]; for
    mutually exclusive models every neighbour votes on every concept, so rows still sum to 1."""
    return (head_weight * head_probs + ev.votes) / (head_weight + ev.weight)


def stratified_folds(positive: np.ndarray, folds: int, seed: int = 0, copies: np.ndarray | None = None) -> np.ndarray:
    """Fold number per row, spreading each concept's positives (and background rows) evenly.
    `copies` (loupe.near_duplicates.copy_groups): rows of one photo share its first row's fold, so a
    photo uploaded twice is never scored by a model that was trained on its copy."""
    rng = np.random.default_rng(seed)
    group = example_groups(positive)
    fold = np.empty(len(group), np.int64)
    for g in np.unique(group):
        rows = rng.permutation(np.flatnonzero(group == g))
        fold[rows] = (np.arange(len(rows)) + rng.integers(folds)) % folds
    if copies is not None:
        fold = fold[copies]
    return fold


def scaled_to(params: BlendParams, spread: float) -> BlendParams:
    """The params with their temperature set for a head of this logit spread."""
    if params.relative_temperature is None:
        return params
    return msgspec.structs.replace(params, temperature=params.relative_temperature * spread)


class HeldOut:
    """Held-out head logits and neighbour lists for every row, from k-fold cross-validation."""

    def __init__(self, logits: np.ndarray, spread: np.ndarray, sims: np.ndarray, neighbour_rows: np.ndarray,
                 fold: np.ndarray) -> None:
        self.logits = logits  # [n, c]
        self.spread = spread  # [n, 1] logit spread of the head that scored the row (its fold's)
        self.sims = sims  # [n, K] similarities of each row's K nearest training-fold rows
        self.neighbour_rows = neighbour_rows  # [n, K] row indices into the training set
        self.fold = fold

    def evidence(self, k: int, sharpness: float, votes: np.ndarray, voting: np.ndarray) -> Evidence:
        """Votes of each row's k nearest training-fold rows (slots a small fold left empty do not vote)."""
        k = min(k, self.sims.shape[1])
        nb = self.neighbour_rows[:, :k]
        return evidence(self.sims[:, :k], votes[nb], voting[nb] & (self.sims[:, :k, None] > -1), sharpness=sharpness)


def cross_validate(x: np.ndarray, positive: np.ndarray, negative: np.ndarray, targets_of: MakeTargets, *,
                   mutually_exclusive: bool, l2_of: Callable[[int], float], fold: np.ndarray, max_k: int = max(KS),
                   max_iter: int = 100) -> HeldOut:
    """Fit a head per fold on the other folds; record held-out logits and nearest training rows."""
    n, c = positive.shape
    logits = np.zeros((n, c), np.float32)
    spread = np.ones((n, 1), np.float32)
    k = min(max_k, n - int(np.bincount(fold).max()))
    sims = np.full((n, max(k, 1)), -1.0, np.float32)
    rows = np.zeros((n, max(k, 1)), np.int64)
    for f in np.unique(fold):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if len(train) == 0:
            continue
        head = fit_head(x[train], targets_of(positive[train], negative[train]), mutually_exclusive,
                        l2=l2_of(len(train)), max_iter=max_iter)
        logits[test] = head.logits(x[test])
        spread[test] = logit_spread(head, x[train])
        s = pairwise_dots(x[test], x[train])
        top = (np.argpartition(-s, k - 1, axis=1)[:, :k] if k < len(train)
               else np.tile(np.arange(len(train)), (len(test), 1))[:, :k])
        top_s = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_s, axis=1)
        sims[test, :k] = np.take_along_axis(top_s, order, axis=1)
        rows[test, :k] = train[np.take_along_axis(top, order, axis=1)]
    return HeldOut(logits, spread, sims, rows, fold)


def held_out_blend(held: HeldOut, params: BlendParams, votes: np.ndarray, voting: np.ndarray,
                   mutually_exclusive: bool) -> np.ndarray:
    """Blended confidences for every held-out row, each fold's head at its own temperature."""
    relative = params.relative_temperature
    head = head_probabilities(held.logits, mutually_exclusive,
                              params.temperature if relative is None else relative * held.spread)
    return blend(head, held.evidence(params.k, params.sharpness, votes, voting), params.head_weight)


def held_out_loss(probs: np.ndarray, positive: np.ndarray, negative: np.ndarray, targets: Targets,
                  mutually_exclusive: bool) -> float:
    eps = 1e-6
    p = np.clip(probs, eps, 1 - eps)
    if mutually_exclusive:
        per_row = -(targets.values * np.log(p)).sum(axis=1)
        return float((per_row * targets.weights).sum() / max(targets.weights.sum(), eps))
    bce = -(positive * np.log(p) + negative * np.log(1 - p))
    return float((bce * targets.weights).sum() / max(targets.weights.sum(), eps))


def choose_blend(held: HeldOut, positive: np.ndarray, negative: np.ndarray, targets: Targets,
                 mutually_exclusive: bool) -> tuple[BlendParams, float]:
    """The grid point with the lowest held-out loss (a proper score: it rewards calibrated confidences)."""
    votes, voting = vote_targets(positive, negative, mutually_exclusive)
    best: tuple[float, BlendParams] | None = None
    head_by_t = {t: head_probabilities(held.logits, mutually_exclusive, t * held.spread) for t in RELATIVE_TEMPERATURES}
    for k, sharpness in itertools.product(KS, SHARPNESS):
        k = min(k, held.sims.shape[1])
        ev = held.evidence(k, sharpness, votes, voting)
        for t, hp in head_by_t.items():
            for head_weight in HEAD_WEIGHTS:
                loss = held_out_loss(blend(hp, ev, head_weight), positive, negative, targets, mutually_exclusive)
                if best is None or loss < best[0] - 1e-9:
                    best = (loss, BlendParams(head_weight=head_weight, k=k, sharpness=sharpness,
                                              relative_temperature=t))
    assert best is not None
    return best[1], best[0]


__all__ = ["DEFAULT_BLEND", "Head", "HeldOut", "blend", "choose_blend", "cross_validate", "held_out_blend",
           "scaled_to", "stratified_folds"]
