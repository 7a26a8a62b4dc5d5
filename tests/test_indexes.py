"""The FAISS indexes on their own: ids, removal, allow-lists, save/load, exact vs IVF."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.indexes import build_index
from loupe.indexes.factory import IndexHeader, load_index, save_index
from loupe.indexes.faiss_index import FaissIndex
from loupe.indexes.reranked import RerankedIndex


def _vectors(n, d=32, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def in_memory_fetch(ids, x, first_id):
    """Originals by id, as the app's LMDB gives them to a re-ranked index."""
    def fetch(wanted):
        return x[wanted - first_id], np.ones(len(wanted), bool)
    return fetch


@pytest.fixture(params=["exact", "ivf", "ivfpq"])
def index_and_data(request):
    x = _vectors(3000)
    ids = np.arange(1000, 4000, dtype=np.int64)
    threshold = 10_000 if request.param == "exact" else 100
    index = build_index(32, ids, x, approx_threshold=threshold,
                        compressed_threshold=1000 if request.param == "ivfpq" else 10**9)
    assert index.kind == request.param
    if index.kind == "ivfpq":
        index = RerankedIndex(index, in_memory_fetch(ids, x, 1000))
    return index, ids, x


def test_search_finds_itself_first(index_and_data):
    index, ids, x = index_and_data
    hits = index.search(x[:5], 3)
    for i, hit in enumerate(hits):
        assert hit.ids[0] == ids[i]
        assert hit.scores[0] == pytest.approx(1.0, abs=1e-4)
        assert list(hit.scores) == sorted(hit.scores, reverse=True)


def test_allow_list_restricts_results(index_and_data):
    index, ids, x = index_and_data
    allow = ids[[10, 500, 2999]]
    hit = index.search(x[:1], 10, allow=allow)[0]
    assert sorted(hit.ids.tolist()) == sorted(allow.tolist())  # all of them, even far-away lists (IVF)


def test_remove(index_and_data):
    index, ids, x = index_and_data
    assert index.remove(ids[:2]) == 2
    assert index.count() == 2998
    hit = index.search(x[:1], 5)[0]
    assert ids[0] not in hit.ids


def test_save_and_load_round_trip(index_and_data, tmp_path):
    index, ids, x = index_and_data
    header = IndexHeader(kind=index.kind, dim=32, count=index.count(), checksum="c", tag="t")
    save_index(tmp_path / "a.faiss", index, header)
    loaded_header, loaded = load_index(tmp_path / "a.faiss")
    assert loaded_header == header
    assert loaded.kind == index.kind and loaded.count() == 3000
    assert loaded.search(x[7:8], 1)[0].ids[0] == ids[7]


def test_ivf_recall_is_high():
    # Image embeddings cluster (by object, by style); so does this data.
    rng = np.random.default_rng(1)
    centres = _vectors(100, seed=3)
    x = centres[rng.integers(0, 100, 5000)] + 0.08 * rng.standard_normal((5000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(5000, dtype=np.int64)
    exact = build_index(32, ids, x, approx_threshold=10**9)
    ivf = build_index(32, ids, x, approx_threshold=1000)
    queries = x[rng.integers(0, 5000, 50)] + 0.02 * rng.standard_normal((50, 32)).astype(np.float32)
    recall = np.mean([len(set(e.ids) & set(a.ids)) / 10 for e, a in
                      zip(exact.search(queries, 10), ivf.search(queries, 10))])
    assert recall > 0.9

    # Compressed codes alone lose recall; re-ranking 150 candidates with the originals wins it back,
    # and the scores are exact.
    pq = build_index(32, ids, x, approx_threshold=1000, compressed_threshold=2000)
    assert pq.kind == "ivfpq"
    reranked = RerankedIndex(pq, in_memory_fetch(ids, x, 0))
    hits = reranked.search(queries, 10)
    recall = np.mean([len(set(e.ids) & set(a.ids)) / 10 for e, a in zip(exact.search(queries, 10), hits)])
    assert recall > 0.95
    assert np.allclose(hits[0].scores, x[hits[0].ids] @ queries[0], atol=1e-5)


def test_unreadable_or_missing_file_loads_as_none(tmp_path):
    assert load_index(tmp_path / "missing.faiss") is None
    (tmp_path / "junk.faiss").write_bytes(b"LOUPEIDX1 not really")
    assert load_index(tmp_path / "junk.faiss") is None


def test_empty_index_and_wrong_dim():
    index = FaissIndex.exact(8)
    assert index.search(np.zeros((1, 8), np.float32), 5)[0].ids.size == 0
    with pytest.raises(ValueError, match="shape"):
        index.add(np.array([1]), np.zeros((1, 4), np.float32))
