"""/v2/searches: by image (bytes or URL), by stored input, by text (CLIP apps), filtered by annotated or
predicted concepts and metadata."""

from __future__ import annotations

import time

import numpy as np
from litestar import Request, post
from litestar.params import RawBody
from loupe.service.common import (
    concept_ref,
    image_bytes,
    inputs_json,
    ok,
    request_deadline,
)
from loupe.service.errors import ApiError
from loupe.service.threads import in_thread
from loupe.service.wire import PostSearches, WConcept, decode

from loupe.api_keys import KeyRecord
from loupe.application import Loupe
from loupe.ids import new_id
from loupe.search import ConceptFilter, SearchFilter

MAX_CLAUSES = 32
MAX_PREDICTED_CONCEPTS = 8


@post("/v2/searches", status_code=200)
@in_thread
def search(loupe: Loupe, key: KeyRecord, request: Request, body: RawBody) -> dict:
    req = decode(body, PostSearches)
    app = loupe.get_app(key.app_id)
    vector: np.ndarray | None = None
    concept_filters: list[ConceptFilter] = []
    metadata: dict = {}
    predicted: set[int] | None = None

    def set_vector(v: np.ndarray) -> None:
        nonlocal vector
        if vector is not None:
            raise ApiError(400, 11102, "a search can have only one image, input or text to match")
        vector = v

    if len(req.query.ands) > MAX_CLAUSES:
        raise ApiError(400, 11102, f"a query may have at most {MAX_CLAUSES} clauses, got {len(req.query.ands)}")
    # Predicted-concept clauses, each (concept, wanted value) once: repeating one costs nothing more.
    wanted_concepts: dict[tuple[str, bool], WConcept] = {}
    for clause in req.query.ands:
        if clause.output is not None and clause.output.input is not None:
            wanted = clause.output.input
            image = wanted.data.image
            if image is not None and (image.base64 or image.url):
                set_vector(loupe.image_vectors(app, [image_bytes(loupe, image, 0, request_deadline(loupe))])[0])
            elif wanted.id:
                record = loupe.get_input(key.app_id, wanted.id)
                set_vector(loupe.embeddings_of(app, np.asarray([record.seq], np.int64))[0])
            elif wanted.data.text is not None and wanted.data.text.raw:
                set_vector(loupe.backbone(app).embed_text([wanted.data.text.raw])[0])
            else:
                raise ApiError(400, 11102, "output.input needs data.image (base64 or url), an id, or data.text.raw")
        elif clause.output is not None and clause.output.data is not None:
            for concept in clause.output.data.concepts:
                wanted_concepts.setdefault((concept_ref(loupe, key.app_id, concept), concept.positive), concept)
        elif clause.input is not None:
            data = clause.input.data
            for concept in data.concepts:
                concept_filters.append(ConceptFilter(concept_ref(loupe, key.app_id, concept), concept.positive))
            if data.metadata:
                metadata.update(data.metadata)
            if not data.concepts and not data.metadata:
                raise ApiError(400, 11102, "input clause needs data.concepts or data.metadata")
        else:
            raise ApiError(400, 11102, "each query.ands item needs input or output")

    if len(wanted_concepts) > MAX_PREDICTED_CONCEPTS:
        raise ApiError(400, 11102, f"a query may filter by at most {MAX_PREDICTED_CONCEPTS} predicted concepts")
    deadline = time.monotonic() + loupe.config.search_deadline_seconds
    for (concept_id, positive), concept in wanted_concepts.items():
        seqs = loupe.models.inputs_predicted(key.app_id, concept_id, positive, deadline)
        if seqs is None:  # no trained model knows the concept: match its name by text (CLIP)
            set_vector(loupe.backbone(app).embed_text([concept.name or concept.id or ""])[0])
            continue
        predicted = seqs if predicted is None else predicted & seqs

    flt = SearchFilter(concepts=tuple(concept_filters), metadata=metadata,
                       seqs=None if predicted is None else tuple(sorted(predicted)))
    page, per_page = req.pagination.page, req.pagination.per_page
    if vector is not None:
        hits = loupe.search_by_vector(app, vector, page=page, per_page=per_page, flt=flt)
    elif not flt.empty:
        hits = loupe.search_by_filter(key.app_id, flt, page=page, per_page=per_page)
    else:
        raise ApiError(400, 11102, "the query is empty: give query.ands")
    inputs = inputs_json(request, loupe, key.app_id, [h.input for h in hits])
    return ok(id=new_id(), hits=[{"score": round(min(1.0, max(0.0, h.score)), 6), "input": i}
                                 for h, i in zip(hits, inputs)])


ROUTES = [search]
