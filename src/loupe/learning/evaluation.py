"""k-fold cross-validation of a version's recipe on its own training data: metrics a person can act on."""

from __future__ import annotations

import time

import numpy as np

from loupe.learning.blend import cross_validate, held_out_blend, stratified_folds
from loupe.learning.heads import targets_for
from loupe.learning.metrics import (
    average_precision,
    pr_curve,
    precision_recall_f1,
    roc_auc,
    roc_curve,
)
from loupe.learning.near_duplicates import copy_groups
from loupe.learning.neighbours import vote_targets
from loupe.learning.training import l2_for
from loupe.learning.training_set import TrainingSet
from loupe.learning.values import (
    BlendParams,
    ConceptMetrics,
    Evaluation,
    EvaluationStatus,
    HeldOutPrediction,
)

THRESHOLD = 0.5  # multi-label decision threshold; mutually exclusive models decide by argmax
MAX_STORED_SCORES = 500_000  # held-out scores kept with the version (rows x concepts)


def held_out_scores(x: np.ndarray, ts: TrainingSet, mutually_exclusive: bool, params: BlendParams,
                    fold: np.ndarray) -> np.ndarray:
    """Blended confidences for every row from a model that never saw that row's fold."""
    held = cross_validate(x, ts.positive, ts.negative, targets_for(mutually_exclusive),
                          mutually_exclusive=mutually_exclusive, l2_of=l2_for, fold=fold, max_k=params.k)
    votes, voting = vote_targets(ts.positive, ts.negative, mutually_exclusive)
    return held_out_blend(held, params, votes, voting, mutually_exclusive)


def evaluate(x: np.ndarray, ts: TrainingSet, concept_ids: list[str], mutually_exclusive: bool,
             params: BlendParams, *, folds: int = 5, seed: int = 0) -> Evaluation:
    started = time.perf_counter()
    min_pos = int(ts.positive.sum(axis=0).min()) if len(ts.seqs) else 0
    if min_pos < 2:
        return Evaluation(status=EvaluationStatus.FAILED, created_at=time.time(),
                          detail="every concept needs at least 2 positive examples to be cross-validated")
    folds = min(folds, min_pos)
    fold = stratified_folds(ts.positive, folds, seed, copy_groups(x, ts.sha256))  # copies held out together
    scores = held_out_scores(x, ts, mutually_exclusive, params, fold)
    predicted = _decisions(scores, mutually_exclusive)

    concepts = []
    for j, concept in enumerate(concept_ids):
        known = ts.positive[:, j] | ts.negative[:, j]
        y, s, p = ts.positive[known, j], scores[known, j], predicted[known, j]
        precision, recall, f1 = precision_recall_f1(y, p)
        concepts.append(ConceptMetrics(
            concept_id=concept, num_pos=int(y.sum()), num_neg=int((~y).sum()), roc_auc=roc_auc(y, s),
            average_precision=average_precision(y, s), threshold=THRESHOLD, precision=precision, recall=recall,
            f1=f1, roc_curve=roc_curve(y, s), pr_curve=pr_curve(y, s)))

    rows = [_held_out(ts, i, int(fold[i]), scores[i], concept_ids) for i in range(len(ts.seqs))]
    wrong = ((predicted != ts.positive) & (ts.positive | ts.negative)).any(axis=1)
    evaluation = Evaluation(status=EvaluationStatus.EVALUATED, folds=folds, created_at=time.time(), concepts=concepts,
                            misclassified=[rows[i] for i in np.flatnonzero(wrong)],
                            predictions=rows if scores.size <= MAX_STORED_SCORES else [])
    if mutually_exclusive:
        single = ts.positive.sum(axis=1) == 1
        actual, guess = ts.positive[single].argmax(axis=1), scores[single].argmax(axis=1)
        evaluation.top1_accuracy = float((actual == guess).mean()) if single.any() else None
        matrix = np.zeros((len(concept_ids), len(concept_ids)), np.int64)
        np.add.at(matrix, (actual, guess), 1)
        evaluation.confusion_concepts = list(concept_ids)
        evaluation.confusion = matrix.tolist()
    evaluation.seconds = time.perf_counter() - started
    return evaluation


def _decisions(scores: np.ndarray, mutually_exclusive: bool) -> np.ndarray:
    if mutually_exclusive:
        out = np.zeros(scores.shape, bool)
        out[np.arange(len(scores)), scores.argmax(axis=1)] = True
        return out
    return scores >= THRESHOLD


def _held_out(ts: TrainingSet, i: int, fold: int, scores: np.ndarray, concept_ids: list[str]) -> HeldOutPrediction:
    return HeldOutPrediction(
        input_id=ts.input_ids[i], fold=fold, scores=[round(float(v), 6) for v in scores],
        positives=[c for c, p in zip(concept_ids, ts.positive[i]) if p],
        negatives=[c for c, n in zip(concept_ids, ts.explicit_negative[i]) if n])
