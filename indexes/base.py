"""The vector-index interface."""

from __future__ import annotations

from typing import Protocol

import msgspec
import numpy as np


class SearchHits(msgspec.Struct, frozen=True):
    """One query's results, best first: ids (int64) and inner-product scores (float32)."""

    ids: np.ndarray
    scores: np.ndarray


class VectorIndex(Protocol):
    kind: str  # "exact", "ivf" or "ivfpq"
    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(self, queries: np.ndarray, k: int, allow: np.ndarray | None = None, *,
               candidates: int | None = None) -> list[SearchHits]:
        """Top-k by inner product; with `allow`, only ids in that array are considered. `candidates`:
        for an index that re-ranks approximate results, how many to re-rank (None: its default)."""
        ...

    def count(self) -> int: ...

    def ids(self) -> np.ndarray: ...

    def to_bytes(self) -> bytes: ...
