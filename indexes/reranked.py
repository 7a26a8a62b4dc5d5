"""Exact re-ranking over an approximate index: candidates from compressed codes, scores from the
original vectors (which the owner fetches, e.g. from LMDB), so results and scores are exact for every
candidate found and recall only depends on the candidates."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from loupe.indexes.base import SearchHits, VectorIndex

# Candidates per query before re-ranking. Measured at 1M inputs (jittered Caltech-101 vectors, queries
# jittered alike, benchmarks/scale.py): recall@10 against exact search 0.93 with 150, 0.997 with 300,
# 0.999 with 500; search p50 2.4 / 4.1 / 6.4 ms, the fetches from LMDB being most of it.
RERANK_DEPTH = 300

# ids -> (vectors [n, dim], found [n] bool): ids deleted meanwhile come back not found.
Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class RerankedIndex:
    def __init__(self, inner: VectorIndex, fetch: Fetch, depth: int = RERANK_DEPTH) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.dim = inner.dim
        self._fetch = fetch
        self._depth = depth

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.inner.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> int:
        return self.inner.remove(ids)

    def count(self) -> int:
        return self.inner.count()

    def ids(self) -> np.ndarray:
        return self.inner.ids()

    def to_bytes(self) -> bytes:
        return self.inner.to_bytes()

    def search(self, queries: np.ndarray, k: int, allow: np.ndarray | None = None, *,
               candidates: int | None = None) -> list[SearchHits]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        found = self.inner.search(queries, max(k, candidates or self._depth), allow)
        pool = np.unique(np.concatenate([h.ids for h in found] or [np.zeros(0, np.int64)]))
        vectors, present = self._fetch(pool)
        row_of = {int(i): r for r, i in enumerate(pool.tolist())}
        hits = []
        for query, approx in zip(queries, found):
            rows = np.asarray([row_of[int(i)] for i in approx.ids.tolist()], np.int64)
            rows = rows[present[rows]] if len(rows) else rows
            scores = vectors[rows] @ query
            top = np.argsort(-scores, kind="stable")[:k]
            hits.append(SearchHits(pool[rows[top]].astype(np.int64), scores[top].astype(np.float32)))
        return hits
