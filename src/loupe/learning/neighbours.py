"""Neighbour evidence: similarity-weighted votes of the nearest labeled inputs, per concept."""

from __future__ import annotations

import msgspec
import numpy as np

from loupe.learning.heads import exclusive_targets


def vote_targets(positive: np.ndarray, negative: np.ndarray, mutually_exclusive: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per neighbour and concept: vote value in [0, 1] and whether it votes at all."""
    if mutually_exclusive:
        values = exclusive_targets(positive, negative).values
        return values, np.ones_like(values, dtype=bool)
    return positive.astype(np.float32), positive | negative


class Evidence(msgspec.Struct, frozen=True):
    votes: np.ndarray  # [q, c]: sum of weight x vote
    weight: np.ndarray  # [q, c]: sum of weights of the neighbours that vote on each concept

    def fraction(self, prior: float) -> np.ndarray:
        """The neighbours' own verdict in [0, 1] (the prior where nobody votes)."""
        return np.where(self.weight > 0, self.votes / np.maximum(self.weight, 1e-12), prior)


def evidence(similarities: np.ndarray, votes: np.ndarray, voting: np.ndarray, *, sharpness: float) -> Evidence:
    """similarities [q, k]; votes/voting [q, k, c].

    Weight exp(sharpness * (s - 1)): a near duplicate (s ~ 1) counts fully, a loose neighbour hardly.
    """
    w = np.exp(sharpness * (np.clip(similarities, -1, 1) - 1.0))[..., None] * voting
    return Evidence((w * votes).sum(axis=1), w.sum(axis=1))
