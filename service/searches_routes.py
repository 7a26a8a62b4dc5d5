"""/v2/searches: by image (bytes or URL), by stored input, by text (CLIP apps), filtered by annotated or
predicted concepts and metadata. The wire query becomes one core SearchQuery."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.params import RawBody

from loupe.accounts.access import Grant
from loupe.application import Loupe
from loupe.ids import new_id
from loupe.search.query import PredictedConcept, SearchQuery
from loupe.service.auth import READ
from loupe.service.common import (
    concept_ref,
    image_bytes,
    inputs_json,
    ok,
    request_deadline,
)
from loupe.service.errors import ApiError
from loupe.service.threads import in_thread
from loupe.service.wire import PostSearches, WGeo, WGeoLimit, decode
from loupe.store import geo
from loupe.store.filters import ConceptFilter
from loupe.store.geo import GeoQuery, check_point

MAX_CLAUSES = 32


@post("/searches", status_code=200, opt=READ)
@in_thread
def search(loupe: Loupe, caller: Grant, request: Request, body: RawBody) -> dict:
    req = decode(body, PostSearches)
    query = _query(loupe, caller.app_id, req)
    hits = loupe.search.run(caller.app_id, query)
    inputs = inputs_json(request, loupe, caller.app_id, [h.input for h in hits])
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
    areas: list[GeoQuery] = []
    input_ids: list[str] = []
    urls: list[str] = []

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
                look_like(input_id=wanted.id, crop=tuple(image.crop or ()) if image is not None else ())
            elif wanted.data.text is not None and wanted.data.text.raw:
                look_like(text=wanted.data.text.raw)
            else:
                raise ApiError(400, 11102, "output.input needs data.image (base64 or url), an id, or data.text.raw")
        elif clause.output is not None and clause.output.data is not None:
            predicted += [PredictedConcept(concept_ref(loupe, app_id, c), c.positive, c.name or c.id or "")
                          for c in clause.output.data.concepts]
        elif clause.input is not None:
            data = clause.input.data
            url = data.image.url if data.image is not None else None
            if not (data.concepts or data.metadata or data.geo or clause.input.id or url):
                raise ApiError(400, 11102, "input clause needs an id, data.concepts, data.metadata, data.geo or "
                                           "data.image.url")
            concepts += [ConceptFilter(concept_ref(loupe, app_id, c), c.positive) for c in data.concepts]
            metadata.update(data.metadata or {})
            if data.geo is not None:
                areas.append(_area(data.geo))
            if clause.input.id:
                input_ids.append(clause.input.id)
            if url:
                urls.append(url)
        else:
            raise ApiError(400, 11102, "each query.ands item needs input or output")
    return SearchQuery(**like, concepts=tuple(concepts), metadata=metadata, predicted=tuple(predicted),
                       geo=tuple(areas), input_ids=tuple(input_ids), source_urls=tuple(urls),
                       page=req.pagination.page, per_page=req.pagination.per_page)


def _area(wire: WGeo) -> GeoQuery:
    """Clarifai's geo clause: a point with a limit (10 miles when none is sent), or a box of two points."""
    if wire.geo_box:
        if len(wire.geo_box) != 2:
            raise ApiError(400, 11102, f"geo_box needs exactly two geo_points, got {len(wire.geo_box)}")
        a, b = (check_point(p.geo_point.longitude, p.geo_point.latitude) for p in wire.geo_box)
        return geo.box(a, b)
    if wire.geo_point is None:
        raise ApiError(400, 11102, "a geo clause needs geo_point (with geo_limit) or geo_box")
    limit = wire.geo_limit or WGeoLimit()
    return geo.within(check_point(wire.geo_point.longitude, wire.geo_point.latitude), limit.type, limit.value)


ROUTES = [search]
