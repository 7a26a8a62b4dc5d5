"""FAISS implementations: exact inner product (IDMap2 over Flat), IVF-Flat for large collections, and
IVF-PQ (4-bit fast-scan codes) for very large ones, whose candidates the owner re-ranks exactly."""

from __future__ import annotations

import threading
from typing import Any

import faiss
import numpy as np

from loupe.indexes.base import SearchHits

# Training points per IVF list: FAISS wants at least 39 for k-means to be meaningful.
POINTS_PER_LIST = 40


def compressed_lists(expected: int, training: int) -> int:
    """~2*sqrt(n) lists (2000 at 1M), as many as the training sample can support."""
    return max(1, min(int(2 * np.sqrt(expected)), 4096, training // POINTS_PER_LIST))


def pq_subquantizers(dim: int) -> int:
    """4-bit codes over sub-vectors of ~5 dims (measured: recall@10 0.98 after re-ranking 150 candidates
    at 1M inputs); the count must divide the dimension and be even."""
    for m in sorted(range(2, dim + 1, 2), key=lambda m: abs(dim / m - 5)):
        if dim % m == 0:
            return m
    return dim


def _as_ids(ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64)


def _as_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {vectors.shape}")
    return vectors


class FaissIndex:
    """Thread-safe wrapper: FAISS searches may run together, but not alongside add/remove."""

    def __init__(self, index: faiss.Index, kind: str) -> None:
        # Any: faiss's stubs type it as the base Index, without the IDMap / IVF members used here.
        self.index: Any = index
        self.kind = kind
        self.dim = index.d
        self._lock = threading.RLock()
        # The last allow-list's selector: callers cache their allow arrays (per labels version), and
        # building a selector costs O(len(allow)) - at a million inputs more than the search itself.
        self._selector: tuple[np.ndarray, Any] | None = None

    @classmethod
    def exact(cls, dim: int) -> FaissIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "exact")

    @classmethod
    def ivf(cls, dim: int, training: np.ndarray, nprobe: int | None = None, expected: int | None = None) -> FaissIndex:
        n = expected or len(training)
        nlist = int(np.clip(np.sqrt(n), 1, 4096))  # ~sqrt(n) lists: enough points each to train
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(_as_vectors(training, dim))
        # A quarter of the lists: high recall on clustered image embeddings at a fraction of exact cost.
        index.nprobe = nprobe or min(nlist, max(16, nlist // 4))
        return cls(index, "ivf")

    @classmethod
    def compressed(cls, dim: int, training: np.ndarray, expected: int, nprobe: int = 32) -> FaissIndex:
        """IVF with product-quantised codes: ~dim/10 bytes a vector (128 at 1280 dims) instead of 4*dim.
        Scores are approximate: search a few hundred candidates and re-rank them with the originals
        (loupe.indexes.reranked)."""
        nlist = compressed_lists(expected, len(training))
        index: Any = faiss.index_factory(dim, f"IVF{nlist},PQ{pq_subquantizers(dim)}x4fs", faiss.METRIC_INNER_PRODUCT)
        index.train(_as_vectors(training, dim))
        index.nprobe = min(nlist, nprobe)
        return cls(index, "ivfpq")

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        with self._lock:
            self.index.add_with_ids(_as_vectors(vectors, self.dim), _as_ids(ids))

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        with self._lock:
            return int(self.index.remove_ids(faiss.IDSelectorBatch(_as_ids(ids))))

    def count(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """Every stored id, sorted (for consistency checks against the source of truth)."""
        with self._lock:
            if self.kind == "exact":
                found = faiss.vector_to_array(self.index.id_map)
            else:
                invlists = self.index.invlists
                found = np.concatenate([faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                                        for i in range(self.index.nlist)] or [np.zeros(0, np.int64)])
        return np.sort(found.astype(np.int64))

    def search(self, queries: np.ndarray, k: int, allow: np.ndarray | None = None, *,
               candidates: int | None = None) -> list[SearchHits]:
        queries = _as_vectors(queries, self.dim)
        with self._lock:
            total = self.count()
            k = min(k, total if allow is None else min(total, len(allow)))
            if k <= 0:
                empty = SearchHits(np.zeros(0, np.int64), np.zeros(0, np.float32))
                return [empty for _ in range(len(queries))]
            params = self._params(allow, total)
            scores, ids = self.index.search(queries, k, params=params)
        hits = []
        for row_scores, row_ids in zip(scores, ids):
            keep = row_ids >= 0
            hits.append(SearchHits(row_ids[keep].copy(), row_scores[keep].copy()))
        return hits

    def _params(self, allow: np.ndarray | None, total: int) -> Any:
        if allow is None:
            return None
        # The selector must stay referenced until the search returns; the params object holds it.
        cached = self._selector
        if cached is not None and cached[0] is allow:
            selector = cached[1]
        else:
            selector = faiss.IDSelectorBatch(_as_ids(allow))
            self._selector = (allow, selector)
        if self.kind != "exact":
            # A narrow allow-list may live in lists the default nprobe never visits: probe them all.
            nprobe = self.index.nlist if len(allow) * 4 < total else self.index.nprobe
            params: Any = faiss.SearchParametersIVF()
            params.nprobe = nprobe
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        params._selector = selector
        return params

    def to_bytes(self) -> bytes:
        with self._lock:
            return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, kind: str) -> FaissIndex:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        return cls(index, kind)
