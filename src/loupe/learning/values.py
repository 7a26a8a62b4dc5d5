"""Values that learning produces and the store keeps: blend parameters and evaluations. They depend on
nothing else in Loupe, so the store can persist them without reaching up into the learning code."""

from __future__ import annotations

from enum import StrEnum

import msgspec


class BlendParams(msgspec.Struct, frozen=True, kw_only=True):
    """How head probabilities and neighbour votes combine; chosen by cross-validation at train time."""

    # confidence = (head_weight * head + sum(w_i * vote_i)) / (head_weight + sum(w_i)):
    # the head is a prior worth `head_weight` neighbours; a near duplicate has w ~ 1.
    head_weight: float
    k: int  # neighbours consulted
    sharpness: float  # neighbour weight w = exp(sharpness * (similarity - 1))
    temperature: float = 1.0  # head logits are divided by this
    # The same as a multiple of the head's logit spread on its training rows (None in versions made
    # before it existed): a head fitted on other rows, as in evaluation folds, derives its own from it.
    relative_temperature: float | None = None


class ConceptMetrics(msgspec.Struct, kw_only=True):
    concept_id: str
    num_pos: int
    num_neg: int
    roc_auc: float | None
    average_precision: float | None
    threshold: float
    precision: float
    recall: float
    f1: float
    roc_curve: list[list[float]] = []  # [[fpr...], [tpr...], [thresholds...]], thinned
    pr_curve: list[list[float]] = []  # [[precision...], [recall...], [thresholds...]], thinned


class HeldOutPrediction(msgspec.Struct, kw_only=True):
    input_id: str
    fold: int
    scores: list[float]  # per concept, in the version's concept order
    positives: list[str]
    negatives: list[str]


class EvaluationStatus(StrEnum):
    QUEUED = "queued"
    EVALUATING = "evaluating"
    EVALUATED = "evaluated"
    FAILED = "failed"


class Evaluation(msgspec.Struct, kw_only=True):
    status: EvaluationStatus
    detail: str = ""
    folds: int = 0
    created_at: float = 0.0
    seconds: float = 0.0
    top1_accuracy: float | None = None  # mutually exclusive models
    concepts: list[ConceptMetrics] = []
    confusion_concepts: list[str] = []
    confusion: list[list[int]] = []  # [actual][predicted], mutually exclusive models
    misclassified: list[HeldOutPrediction] = []
    predictions: list[HeldOutPrediction] = []


class ConceptThreshold(msgspec.Struct, frozen=True, kw_only=True):
    """Where a version's confidence in one concept is to be trusted: chosen at train time from held-out
    cross-validation scores for a target precision (loupe.learning.thresholds)."""

    concept_id: str
    threshold: float  # a prediction "meets" the concept at or above this confidence
    target: float  # the precision asked for
    # The precision to expect at the threshold (held-out precision shrunk toward the target: a few lucky
    # held-out rows promise too much) and what held-out rows showed; None when too few were held out.
    precision: float | None = None
    held_out_precision: float | None = None
    recall: float | None = None
    support: int = 0  # held-out predictions of the concept at or above the threshold
    reachable: bool = True  # False: no threshold reached the target; this one has the best precision
