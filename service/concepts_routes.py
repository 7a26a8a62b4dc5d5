"""/v2/concepts: list, get, create, rename, search by name."""

from __future__ import annotations

from litestar import get, patch, post
from litestar.params import RawBody

from loupe.accounts.access import Grant
from loupe.application import Loupe
from loupe.service.auth import LABEL, READ
from loupe.service.clarifai_json import concept_json
from loupe.service.common import ok
from loupe.service.errors import ApiError
from loupe.service.threads import in_thread
from loupe.service.wire import PatchConcepts, PostConcepts, PostConceptSearches, decode


@get("/concepts", opt=READ)
@in_thread
def list_concepts(loupe: Loupe, caller: Grant, page: int = 1, per_page: int = 20) -> dict:
    concepts = loupe.concepts.list_page(caller.app_id, page=page, per_page=per_page)
    return ok(concepts=[concept_json(c, caller.app_id) for c in concepts])


@get("/concepts/{concept_id:str}", opt=READ)
@in_thread
def get_concept(loupe: Loupe, caller: Grant, concept_id: str) -> dict:
    return ok(concept=concept_json(loupe.concepts.get(caller.app_id, concept_id), caller.app_id))


@post("/concepts", status_code=200, opt=LABEL)
@in_thread
def add_concepts(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    req = decode(body, PostConcepts)
    if not req.concepts:
        raise ApiError(400, 11102, "no concepts given")
    pairs = []
    for c in req.concepts:
        if not (c.id or c.name):
            raise ApiError(400, 11102, "each concept needs an id (or a name)")
        pairs.append((c.id or c.name, c.name))
    created = loupe.concepts.add(caller.app_id, pairs, by=caller.actor)
    return ok(concepts=[concept_json(c, caller.app_id) for c in created])


@patch("/concepts", opt=LABEL)
@in_thread
def patch_concepts(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    req = decode(body, PatchConcepts)
    if req.action not in ("overwrite", "merge"):
        raise ApiError(400, 11102, f"concepts can only be renamed (action overwrite), got {req.action!r}")
    for c in req.concepts:
        if not c.id or not c.name:
            raise ApiError(400, 11102, "each concept to patch needs its id and a new name")
    renamed = loupe.concepts.rename(caller.app_id, [(c.id, c.name) for c in req.concepts], by=caller.actor)
    return ok(concepts=[concept_json(c, caller.app_id) for c in renamed])


@post("/concepts/searches", status_code=200, opt=READ)
@in_thread
def search_concepts(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    req = decode(body, PostConceptSearches)
    found = loupe.concepts.search(caller.app_id, req.concept_query.name or "*", page=req.pagination.page,
                                  per_page=req.pagination.per_page)
    return ok(concepts=[concept_json(c, caller.app_id) for c in found])


ROUTES = [list_concepts, get_concept, add_concepts, patch_concepts, search_concepts]
