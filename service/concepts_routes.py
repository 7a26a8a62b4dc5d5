"""/v2/concepts: list, get, create, rename, search by name."""

from __future__ import annotations

from litestar import get, patch, post
from litestar.params import RawBody

from loupe.application import Loupe
from loupe.apps.keys import KeyRecord
from loupe.service.auth import WRITE
from loupe.service.clarifai_json import concept_json
from loupe.service.common import ok
from loupe.service.errors import ApiError
from loupe.service.threads import in_thread
from loupe.service.wire import PatchConcepts, PostConcepts, PostConceptSearches, decode


@get("/v2/concepts")
@in_thread
def list_concepts(loupe: Loupe, key: KeyRecord, page: int = 1, per_page: int = 20) -> dict:
    concepts = loupe.concepts.list_page(key.app_id, page=page, per_page=per_page)
    return ok(concepts=[concept_json(c, key.app_id) for c in concepts])


@get("/v2/concepts/{concept_id:str}")
@in_thread
def get_concept(loupe: Loupe, key: KeyRecord, concept_id: str) -> dict:
    return ok(concept=concept_json(loupe.concepts.get(key.app_id, concept_id), key.app_id))


@post("/v2/concepts", status_code=200, guards=WRITE)
@in_thread
def add_concepts(loupe: Loupe, key: KeyRecord, body: RawBody) -> dict:
    req = decode(body, PostConcepts)
    if not req.concepts:
        raise ApiError(400, 11102, "no concepts given")
    pairs = []
    for c in req.concepts:
        if not (c.id or c.name):
            raise ApiError(400, 11102, "each concept needs an id (or a name)")
        pairs.append((c.id or c.name, c.name))
    created = loupe.concepts.add(key.app_id, pairs)
    return ok(concepts=[concept_json(c, key.app_id) for c in created])


@patch("/v2/concepts", guards=WRITE)
@in_thread
def patch_concepts(loupe: Loupe, key: KeyRecord, body: RawBody) -> dict:
    req = decode(body, PatchConcepts)
    if req.action not in ("overwrite", "merge"):
        raise ApiError(400, 11102, f"concepts can only be renamed (action overwrite), got {req.action!r}")
    for c in req.concepts:
        if not c.id or not c.name:
            raise ApiError(400, 11102, "each concept to patch needs its id and a new name")
    renamed = loupe.concepts.rename(key.app_id, [(c.id, c.name) for c in req.concepts])
    return ok(concepts=[concept_json(c, key.app_id) for c in renamed])


@post("/v2/concepts/searches", status_code=200)
@in_thread
def search_concepts(loupe: Loupe, key: KeyRecord, body: RawBody) -> dict:
    req = decode(body, PostConceptSearches)
    found = loupe.concepts.search(key.app_id, req.concept_query.name or "*", page=req.pagination.page,
                                  per_page=req.pagination.per_page)
    return ok(concepts=[concept_json(c, key.app_id) for c in found])


ROUTES = [list_concepts, get_concept, add_concepts, patch_concepts, search_concepts]
