"""Logistic-regression heads over stored embeddings, fitted by full-batch L-BFGS in torch.

One-vs-rest (multi-label): a sigmoid per concept, class-balanced binary cross-entropy, entries
without a label masked out. Mutually exclusive: one softmax over the concepts, class-balanced
cross-entropy against soft targets (one-hot for a positive; uniform over the other concepts for an
input that is only known NOT to be one; uniform for background inputs). L2 penalty on the weights,
not the biases. Warm starts from a previous head cut the iterations needed after a label edit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from loupe.learning.dot_products import pairwise_dots

if TYPE_CHECKING:
    import torch

BF16_MIN_ELEMENTS = 500_000  # ~400 examples of 1,280-d: few-shot fits exact, CV and big fits fast


class Head(msgspec.Struct, frozen=True):
    weights: np.ndarray  # float32 [c, d]
    bias: np.ndarray  # float32 [c]
    mutually_exclusive: bool

    def logits(self, x: np.ndarray) -> np.ndarray:
        return pairwise_dots(x, self.weights) + self.bias

    def probabilities(self, x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return head_probabilities(self.logits(x), self.mutually_exclusive, temperature)


def logit_spread(head: Head, x: np.ndarray, max_rows: int = 2000) -> float:
    """Standard deviation of the head's logits on (up to max_rows of) its training rows. The scale of
    logits shrinks with the penalty, which is strong for tiny sets; temperatures are set relative to it."""
    rows = x if len(x) <= max_rows else x[np.linspace(0, len(x) - 1, max_rows).astype(np.int64)]
    return max(float(np.std(head.logits(rows))), 1e-6)


def head_probabilities(logits: np.ndarray, mutually_exclusive: bool,
                       temperature: float | np.ndarray = 1.0) -> np.ndarray:
    """`temperature`: one for all rows, or one per row ([n, 1])."""
    z = logits / temperature
    if mutually_exclusive:
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


class Targets(msgspec.Struct, frozen=True):
    """Per example and concept: target value and weight (0 = unknown, ignored)."""

    values: np.ndarray  # float32 [n, c]: OvR 0/1; ME a distribution over concepts
    weights: np.ndarray  # float32 [n, c] (OvR) or [n] (ME)


# (positive, negative) label matrices -> training targets; one per model kind.
MakeTargets = Callable[[np.ndarray, np.ndarray], Targets]


def ovr_targets(positive: np.ndarray, negative: np.ndarray) -> Targets:
    """positive/negative: bool [n, c]; neither = unknown. Each concept's two classes weigh the same."""
    known = positive | negative
    n_pos = positive.sum(axis=0).astype(np.float64)
    n_neg = negative.sum(axis=0).astype(np.float64)
    n_known = known.sum(axis=0)
    w_pos = np.where(n_pos > 0, n_known / (2 * np.maximum(n_pos, 1)), 0.0)
    w_neg = np.where(n_neg > 0, n_known / (2 * np.maximum(n_neg, 1)), 0.0)
    weights = positive * w_pos + negative * w_neg
    return Targets(positive.astype(np.float32), weights.astype(np.float32))


def exclusive_targets(positive: np.ndarray, negative: np.ndarray) -> Targets:
    n, c = positive.shape
    values = np.zeros((n, c), np.float32)
    has_pos = positive.any(axis=1)
    values[has_pos] = positive[has_pos] / positive[has_pos].sum(axis=1, keepdims=True)
    # Not-X only (or background, with no label in the model): mass spread over what remains possible.
    allowed = ~negative[~has_pos]
    allowed[allowed.sum(axis=1) == 0] = True
    values[~has_pos] = allowed / allowed.sum(axis=1, keepdims=True)
    # Balance: each concept's positives weigh as much in total as any other concept's.
    counts = values[has_pos].sum(axis=0)
    per_class = np.where(counts > 0, has_pos.sum() / (c * np.maximum(counts, 1e-9)), 0.0)
    weights = np.ones(n, np.float32)
    weights[has_pos] = (values[has_pos] * per_class).sum(axis=1)
    return Targets(values, weights.astype(np.float32))


def targets_for(mutually_exclusive: bool) -> MakeTargets:
    def make(positive: np.ndarray, negative: np.ndarray) -> Targets:
        if mutually_exclusive:
            return exclusive_targets(positive, negative & ~positive)
        return ovr_targets(positive, negative)
    return make


def fit_head(x: np.ndarray, targets: Targets, mutually_exclusive: bool, *, l2: float,
             warm: Head | None = None, max_iter: int = 100, tol: float = 1e-5) -> Head:
    """Minimise mean weighted loss + l2/2 * ||W||^2."""
    import torch  # here, not at the top: predicting and searching never need it

    n, d = x.shape
    c = targets.values.shape[1]
    # Large sets: the two matmuls per step are memory-bound; bfloat16 halves the bytes and runs on
    # native bf16 units (5x faster than fp32 here). Small sets stay fp32: speed does not matter there
    # and fp32 reproduces scikit-learn exactly (bf16 cost ~0.4 points of 1-shot accuracy).
    dtype = _matmul_dtype() if x.size >= BF16_MIN_ELEMENTS else torch.float32
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(dtype)
    yt = torch.from_numpy(targets.values)
    wt = torch.from_numpy(targets.weights)
    norm = float(wt.sum()) or 1.0
    if warm is not None and warm.weights.shape == (c, d):
        w = torch.tensor(warm.weights.T.copy())
        b = torch.tensor(warm.bias.copy())
    else:
        w = torch.zeros((d, c))
        b = torch.zeros(c)
    w.grad, b.grad = torch.zeros_like(w), torch.zeros_like(b)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=10,
                            tolerance_grad=tol, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    # Loss and gradient by hand: autograd's bookkeeping cost more than the two small matmuls per step.
    # The weight gradient as grad_z.T @ x, then transposed: 2-4x faster here than x.T @ grad_z.
    row_mass = yt.sum(dim=1, keepdim=True)

    def closure() -> torch.Tensor:
        z = (xt @ w.to(xt.dtype)).float() + b
        if mutually_exclusive:
            log_p = torch.log_softmax(z, dim=1)
            data = (-(yt * log_p).sum(dim=1) * wt).sum() / norm
            grad_z = (log_p.exp() * row_mass - yt) * (wt / norm)[:, None]
        else:
            per_entry = torch.nn.functional.binary_cross_entropy_with_logits(z, yt, reduction="none")
            data = (per_entry * wt).sum() / (norm / c)
            grad_z = (torch.sigmoid(z) - yt) * wt * (c / norm)
        assert w.grad is not None and b.grad is not None  # set up by the caller before L-BFGS steps
        w.grad.copy_((grad_z.T.to(xt.dtype) @ xt).float().T).add_(w, alpha=l2)
        b.grad.copy_(grad_z.sum(dim=0))
        return data + 0.5 * l2 * (w * w).sum()

    opt.step(closure)
    return Head(w.numpy().T.copy(), b.numpy().copy(), mutually_exclusive)


def _matmul_dtype() -> torch.dtype:
    import torch

    from loupe.backbones.runtimes import cpu_has_fast_bf16

    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
