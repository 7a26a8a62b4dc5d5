"""Binary classification metrics in numpy (checked against scikit-learn in the tests)."""

from __future__ import annotations

import numpy as np


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_v = values[order]
    ranks = np.empty(len(values), np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_v[end + 1] == sorted_v[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Mann-Whitney form of the area under the ROC curve; None when one class is missing."""
    y = y.astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _ranks(np.asarray(score, np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _curve_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-score, kind="mergesort")
    y, score = y[order].astype(np.float64), score[order]
    distinct = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    return tp, fp, score[distinct]


def average_precision(y: np.ndarray, score: np.ndarray) -> float | None:
    """Step-wise area under the precision-recall curve (scikit-learn's definition)."""
    y = y.astype(bool)
    if y.sum() == 0:
        return None
    tp, fp, _ = _curve_points(y, np.asarray(score, np.float64))
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(y: np.ndarray, score: np.ndarray, max_points: int = 50) -> list[list[float]]:
    y = y.astype(bool)
    if y.sum() == 0 or (~y).sum() == 0:
        return []
    tp, fp, thresholds = _curve_points(y, np.asarray(score, np.float64))
    fpr, tpr = np.r_[0.0, fp / (~y).sum()], np.r_[0.0, tp / y.sum()]
    keep = _thin(len(fpr), max_points)
    return [fpr[keep].round(4).tolist(), tpr[keep].round(4).tolist(),
            np.r_[1.0, np.clip(thresholds, 0, 1)][keep].round(4).tolist()]


def pr_curve(y: np.ndarray, score: np.ndarray, max_points: int = 50) -> list[list[float]]:
    y = y.astype(bool)
    if y.sum() == 0:
        return []
    tp, fp, thresholds = _curve_points(y, np.asarray(score, np.float64))
    precision, recall = tp / (tp + fp), tp / y.sum()
    keep = _thin(len(precision), max_points)
    return [precision[keep].round(4).tolist(), recall[keep].round(4).tolist(), thresholds[keep].round(4).tolist()]


def _thin(n: int, max_points: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))


def precision_recall_f1(y: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    y, predicted = y.astype(bool), predicted.astype(bool)
    tp = float((y & predicted).sum())
    precision = tp / predicted.sum() if predicted.sum() else 0.0
    recall = tp / y.sum() if y.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)
