"""Visual search (by image, stored input, part of one, or text on CLIP apps) and filter-only search,
narrowed by annotated concepts, metadata, geo and the concepts a model predicts."""

from __future__ import annotations

import time

import msgspec
import numpy as np

from loupe.apps.context import AppContext
from loupe.errors import InvalidArgument, NotFound
from loupe.indexes import VectorIndex
from loupe.intake.embedding import Embedder
from loupe.intake.imaging import crop_fraction
from loupe.intake.inputs import Inputs
from loupe.models.predictor import CustomPredictor
from loupe.pagination import page_window
from loupe.search.query import MAX_PREDICTED_CONCEPTS, SearchQuery
from loupe.store.filters import SearchFilter, SearchHit, allowed_seqs, filtered_inputs, hits_for
from loupe.store.records import App

MAX_TIE_EXTRA = 1024  # hits asked for beyond a page to order tied scores the same on every page


class Search:
    def __init__(self, context: AppContext, embedder: Embedder, inputs: Inputs, predictor: CustomPredictor) -> None:
        self._context = context
        self._store = context.store
        self._config = context.config
        self._embedder = embedder
        self._inputs = inputs
        self._predictor = predictor

    def run(self, app_id: str, query: SearchQuery) -> list[SearchHit]:
        """Run a search query; predicted-concept filters share one deadline (TooLong past it)."""
        app = self._context.sync(app_id)
        predicted = list(dict.fromkeys(query.predicted))  # a repeated filter costs nothing more
        if len({(p.concept_id, p.positive) for p in predicted}) > MAX_PREDICTED_CONCEPTS:
            raise InvalidArgument(f"a search may filter by at most {MAX_PREDICTED_CONCEPTS} predicted concepts")
        sources = [s for s in (query.image, query.input_id, query.text) if s is not None]
        deadline = time.monotonic() + self._config.search_deadline_seconds
        allowed: set[int] | None = None
        for wanted in predicted:
            seqs = self._predictor.inputs_predicted(app, wanted.concept_id, wanted.positive, deadline)
            if seqs is None:  # no trained model knows the concept: match its name by text (CLIP)
                sources.append(wanted.name or wanted.concept_id)
                query = msgspec.structs.replace(query, text=wanted.name or wanted.concept_id)
                continue
            allowed = seqs if allowed is None else allowed & seqs
        if len(sources) > 1:
            raise InvalidArgument("a search can have only one image, input or text to match")
        flt = SearchFilter(concepts=query.concepts, metadata=query.metadata,
                           seqs=None if allowed is None else tuple(sorted(allowed)), geo=query.geo,
                           input_ids=query.input_ids, source_urls=query.source_urls)
        page, per_page = query.page, query.per_page
        if query.input_id is not None and query.crop:
            # Part of a stored image: that part is embedded (the stored vector is of the whole image).
            image = crop_fraction(self._inputs.image(app_id, query.input_id), list(query.crop), self._config.images)
            query = msgspec.structs.replace(query, image=image, input_id=None)
        if query.image is not None:
            return self.by_image(app_id, query.image, page=page, per_page=per_page, flt=flt)
        if query.input_id is not None:
            return self.by_input(app_id, query.input_id, page=page, per_page=per_page, flt=flt)
        if query.text is not None:
            return self.by_text(app_id, query.text, page=page, per_page=per_page, flt=flt)
        if flt.empty:
            raise InvalidArgument("the query is empty: give query.ands")
        return self.by_filter(app_id, flt, page=page, per_page=per_page)

    def by_image(self, app_id: str, image: bytes, *, page: int = 1, per_page: int = 20,
                 flt: SearchFilter | None = None) -> list[SearchHit]:
        app = self._context.sync(app_id)
        vector = self._embedder.image_vectors(app, [image])[0]
        return self._by_vector(app, vector, page=page, per_page=per_page, flt=flt)

    def by_input(self, app_id: str, input_id: str, *, page: int = 1, per_page: int = 20,
                 flt: SearchFilter | None = None) -> list[SearchHit]:
        app = self._context.sync(app_id)
        record = self._context.get_input(app_id, input_id)
        with self._store.read() as tx:
            vector = tx.get_embedding(app.backbone, record.sha256)
        if vector is None:
            raise NotFound("input", input_id, f"input {input_id!r} has no embedding for backbone {app.backbone}")
        return self._by_vector(app, vector, page=page, per_page=per_page, flt=flt)

    def by_text(self, app_id: str, text: str, *, page: int = 1, per_page: int = 20,
                flt: SearchFilter | None = None) -> list[SearchHit]:
        app = self._context.sync(app_id)
        if not text.strip():
            raise InvalidArgument("search text must not be empty")
        vector = self._context.backbone(app).embed_text([text])[0]  # CapabilityMissing without a text tower
        return self._by_vector(app, vector, page=page, per_page=per_page, flt=flt)

    def by_vector(self, app_id: str, vector: np.ndarray, *, page: int = 1, per_page: int = 20,
                  flt: SearchFilter | None = None) -> list[SearchHit]:
        """Inputs that look like a unit vector of the app's backbone (benchmarks and tools)."""
        return self._by_vector(self._context.sync(app_id), vector, page=page, per_page=per_page, flt=flt)

    def by_filter(self, app_id: str, flt: SearchFilter, *, page: int = 1, per_page: int = 20) -> list[SearchHit]:
        self._context.sync(app_id)
        offset, limit = page_window(page, per_page)
        with self._store.read() as tx:
            return filtered_inputs(tx, app_id, flt, offset, limit)

    def _by_vector(self, app: App, vector: np.ndarray, *, page: int, per_page: int,
                   flt: SearchFilter | None) -> list[SearchHit]:
        offset, limit = page_window(page, per_page)
        index = self._context.index(app)
        with self._store.read() as tx:
            allow = allowed_seqs(tx, app.id, flt or SearchFilter())
            if allow is not None and len(allow) == 0:
                return []
            ids, scores = self._ranked(index, vector, offset + limit, allow)
            return hits_for(tx, app.id, ids[offset:offset + limit], scores[offset:offset + limit])

    @staticmethod
    def _ranked(index: VectorIndex, vector: np.ndarray, wanted: int,
                allow: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The best `wanted` hits ordered by (score as answered, to 6 places; then sequence number), so
        pages agree with one another when scores tie (identical images): the index is asked for more
        until the hits past the last wanted one score lower (at most MAX_TIE_EXTRA more)."""
        k = wanted
        while True:
            found = index.search(vector[None, :], k + 1, allow=allow)[0]
            rounded = np.round(found.scores.astype(np.float64), 6)
            if len(found.ids) <= k or rounded[-1] < rounded[wanted - 1] or k >= wanted + MAX_TIE_EXTRA:
                break
            k = min(2 * k, wanted + MAX_TIE_EXTRA)
        order = np.lexsort((found.ids, -rounded))
        return found.ids[order], found.scores[order]
