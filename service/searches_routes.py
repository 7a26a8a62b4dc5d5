"""/v2/searches: by image (bytes or URL), by stored input, by text (CLIP apps), filtered by annotated or
predicted concepts and metadata. The wire query becomes one core SearchQuery."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.params import RawBody

from loupe.api_keys import KeyRecord
from loupe.application import Loupe
from loupe.ids import new_id
from loupe.search import ConceptFilter, PredictedConcept, SearchQuery
from loupe.service.common import (
    concept_ref,
    image_bytes,
    inputs_json,
    ok,
    request_deadline,
)
from loupe.service.errors import ApiError
from loupe.service.threads import in_thread
from loupe.service.wire import PostSearches, decode

MAX_CLAUSES = 32


@post("/v2/searches", status_code=200)
@in_thread
def search(loupe: Loupe, key: KeyRecord, request: Request, body: RawBody) -> dict:
    req = decode(body, PostSearches)
    query = _query(loupe, key.app_id, req)
    hits = loupe.search(key.app_id, query)
    inputs = inputs_json(request, loupe, key.app_id, [h.input for h in hits])
    return ok(id=new_id(), hits=[{"score": round(min(1.0, max(0.0, h.score)), 6), "input": i}
                                 for h, i in zip(hits, inputs)])


def _query(loupe: Loupe, app_id: str, req: PostSearches) -> SearchQuery:
    """Clarifai's `ands` clauses as one query (image URLs are fetched here, under the URL policy)."""
    if len(req.query.ands) > MAX_CLAUSES:
        raise ApiError(400, 11102, f"a query may have at most {MAX_CLAUSES} clauses, got {len(req.query.ands)}")
    like: dict[str, Any] = {}
    concepts: list[ConceptFilter] = []
    predicted: list[PredictedConcept] = []
    metadata: dict = {}

    def look_like(**source: object) -> None:
        if like:
            raise ApiError(400, 11102, "a search can have only one image, input or text to match")
        like.update(source)

    for clause in req.query.ands:
        if clause.output is not None and clause.output.input is not None:
            wanted = clause.output.input
            image = wanted.data.image
            if image is not None and (image.base64 or image.url):
                look_like(image=image_bytes(loupe, image, 0, request_deadline(loupe)))
            elif wanted.id:
                look_like(input_id=wanted.id)
            elif wanted.data.text is not None and wanted.data.text.raw:
                look_like(text=wanted.data.text.raw)
            else:
                raise ApiError(400, 11102, "output.input needs data.image (base64 or url), an id, or data.text.raw")
        elif clause.output is not None and clause.output.data is not None:
            predicted += [PredictedConcept(concept_ref(loupe, app_id, c), c.positive, c.name or c.id or "")
                          for c in clause.output.data.concepts]
        elif clause.input is not None:
            data = clause.input.data
            if not data.concepts and not data.metadata:
                raise ApiError(400, 11102, "input clause needs data.concepts or data.metadata")
            concepts += [ConceptFilter(concept_ref(loupe, app_id, c), c.positive) for c in data.concepts]
            metadata.update(data.metadata or {})
        else:
            raise ApiError(400, 11102, "each query.ands item needs input or output")
    return SearchQuery(**like, concepts=tuple(concepts), metadata=metadata, predicted=tuple(predicted),
                       page=req.pagination.page, per_page=req.pagination.per_page)


ROUTES = [search]
