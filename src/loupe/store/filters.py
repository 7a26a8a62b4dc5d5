"""Filters over an app's stored inputs (annotated concepts, metadata, geo, ids, source URLs): the allow-lists
visual search narrows by, and the filter-only listing of inputs."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from loupe.store import ReadTxn
from loupe.store.geo import GeoQuery
from loupe.store.records import Input


class ConceptFilter(msgspec.Struct, frozen=True):
    concept_id: str
    positive: bool = True  # False: inputs annotated as explicitly NOT this concept


class SearchFilter(msgspec.Struct, frozen=True):
    concepts: tuple[ConceptFilter, ...] = ()
    metadata: dict[str, Any] = {}
    # Extra allow-list computed by a caller (e.g. inputs a model predicts a concept for).
    seqs: tuple[int, ...] | None = None
    geo: tuple[GeoQuery, ...] = ()  # within each of these (radius of a point, or a box)
    input_ids: tuple[str, ...] = ()  # Clarifai's input clause by id: these inputs only
    source_urls: tuple[str, ...] = ()  # Clarifai's search by original URL: inputs added from each URL

    @property
    def empty(self) -> bool:
        return (not self.concepts and not self.metadata and self.seqs is None and not self.geo
                and not self.input_ids and not self.source_urls)


class SearchHit(msgspec.Struct, frozen=True):
    input: Input
    score: float  # cosine similarity for visual search; 1.0 for pure filter matches


def metadata_contains(have: Any, want: Any) -> bool:
    """True when `want` is a (nested) subset of `have`; numbers compare by value (1 == 1.0)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and metadata_contains(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(
            metadata_contains(h, w) for h, w in zip(have, want))
    if isinstance(want, bool) or isinstance(have, bool):
        return have is want
    return have == want


def allowed_seqs(tx: ReadTxn, app_id: str, flt: SearchFilter) -> np.ndarray | None:
    """Sequence numbers of the inputs that pass the filter (None: no filter, everything passes)."""
    if flt.empty:
        return None
    allowed: np.ndarray | None = None if flt.seqs is None else np.asarray(flt.seqs, np.int64)

    def narrow(found: np.ndarray) -> None:
        nonlocal allowed
        allowed = found if allowed is None else np.intersect1d(allowed, found)

    for input_id in flt.input_ids:
        record = tx.get_input(app_id, input_id)
        narrow(np.asarray([record.seq] if record is not None else [], np.int64))
    for url in flt.source_urls:
        narrow(tx.source_seqs(app_id, url))
    for area in flt.geo:
        narrow(tx.geo_seqs(app_id, area))
    for cf in flt.concepts:
        found = tx.labelled_seqs(app_id, cf.concept_id, cf.positive)
        allowed = found if allowed is None else np.intersect1d(allowed, found)
    if flt.metadata:
        candidates = (tx.iter_inputs(app_id) if allowed is None
                      else (r for s in allowed if (r := _input_at(tx, app_id, int(s))) is not None))
        allowed = np.asarray([r.seq for r in candidates if metadata_contains(r.metadata, flt.metadata)], np.int64)
    return np.unique(allowed) if allowed is not None else None


def _input_at(tx: ReadTxn, app_id: str, seq: int) -> Input | None:
    input_id = tx.input_id_at(app_id, seq)
    return None if input_id is None else tx.get_input(app_id, input_id)


def hits_for(tx: ReadTxn, app_id: str, ids: np.ndarray, scores: np.ndarray) -> list[SearchHit]:
    hits = []
    for seq, score in zip(ids.tolist(), scores.tolist()):
        record = _input_at(tx, app_id, seq)
        if record is not None:  # deleted since the index answered
            hits.append(SearchHit(record, float(score)))
    return hits


def filtered_inputs(tx: ReadTxn, app_id: str, flt: SearchFilter, offset: int, limit: int) -> list[SearchHit]:
    """Filter-only search: matching inputs, newest first, each with score 1."""
    allowed = allowed_seqs(tx, app_id, flt)
    if allowed is None:
        records = tx.iter_inputs(app_id)
        hits = []
        for i, record in enumerate(records):
            if i >= offset + limit:
                break
            if i >= offset:
                hits.append(SearchHit(record, 1.0))
        return hits
    page = allowed[::-1][offset:offset + limit]
    return hits_for(tx, app_id, page, np.ones(len(page), np.float32))
