"""/v2/inputs: add, list, get, patch labels and metadata, delete; /v2/inputs/status."""

from __future__ import annotations

from litestar import Request, Response, delete, get, patch, post
from litestar.params import RawBody

from loupe.accounts.access import Grant
from loupe.application import Loupe
from loupe.errors import UrlFetchError
from loupe.intake.inputs import NewInput
from loupe.intake.labels import InputEdit
from loupe.service.auth import LABEL, MANAGE, READ
from loupe.service.common import (
    image_bytes,
    inputs_json,
    ok,
    request_deadline,
    split_concepts,
    stored_geo,
    stored_regions,
)
from loupe.service.errors import ApiError
from loupe.service.request_ids import with_request_id
from loupe.service.threads import in_thread
from loupe.service.wire import DeleteMany, PatchInputs, PostInputs, decode
from loupe.store.filters import ConceptFilter, SearchFilter

MAX_BATCH = 128  # as Clarifai and its clients


@post("/inputs", status_code=200, opt=LABEL)
@in_thread
def add_inputs(loupe: Loupe, caller: Grant, request: Request, body: RawBody) -> dict | Response:
    req = decode(body, PostInputs)
    if not req.inputs:
        raise ApiError(400, 11102, "no inputs given")
    if len(req.inputs) > MAX_BATCH:
        raise ApiError(400, 11102, f"at most {MAX_BATCH} inputs per request, got {len(req.inputs)}")
    items, failures = [], {}
    deadline = request_deadline(loupe)
    for position, wire_input in enumerate(req.inputs):
        data = wire_input.data
        try:
            raw = image_bytes(loupe, data.image, position, deadline)
        except UrlFetchError as exc:
            failures[position] = exc.message
            continue
        positive, negative = split_concepts(loupe, caller.app_id, data.concepts)
        source = data.image.url if data.image and data.image.url else ""
        items.append(NewInput(image=raw, id=wire_input.id, source=source, metadata=data.metadata or {},
                              concepts=positive, not_concepts=negative, geo=stored_geo(data),
                              regions=stored_regions(loupe, caller.app_id, data.regions) or [],
                              crop=list(data.image.crop or []) if data.image else []))
    if failures:
        # A batch is all or nothing: nothing was stored; each input says how it fared.
        statuses = [{"id": w.id or "", "data": {"image": {"url": (w.data.image.url if w.data.image else "") or ""}},
                     "status": ({"code": 30002, "description": "Download failed", "details": failures[i]}
                                if i in failures
                                else {"code": 30001, "description": "Not stored: another input failed"})}
                    for i, w in enumerate(req.inputs)]
        return Response({"status": with_request_id({
            "code": 30002, "description": "Download failed",
            "details": "; ".join(f"input {i}: {m}" for i, m in failures.items())}),
            "inputs": statuses}, status_code=400)
    added = loupe.inputs.add(caller.app_id, items, by=caller.actor)
    answers = inputs_json(request, loupe, caller.app_id, added.inputs)
    for item, answer, earlier in zip(items, answers, added.duplicate_of):
        if earlier:  # said in the status's details: clients read its code, which stays "complete"
            answer["status"]["details"] = (
                f"the same image as input {earlier!r}: linked to it (labels merged), not added again"
                if item.id is None else f"the same image as input {earlier!r} (added under its own id, as asked)")
    return ok(inputs=answers)


@get("/inputs", opt=READ)
@in_thread
def list_inputs(loupe: Loupe, caller: Grant, request: Request, page: int = 1, per_page: int = 20,
                concept: str | None = None, negative: bool = False, unlabeled: bool = False) -> dict:
    """Newest first. Loupe's additions: `concept` keeps inputs annotated with it (as not-it with
    `negative`); `unlabeled` keeps inputs with no label at all."""
    if unlabeled and concept:
        raise ApiError(400, 11102, "give concept or unlabeled, not both")
    flt = SearchFilter(concepts=(ConceptFilter(concept, not negative),)) if concept else None
    records = (loupe.inputs.unlabeled(caller.app_id, page=page, per_page=per_page) if unlabeled else
               loupe.inputs.list_page(caller.app_id, page=page, per_page=per_page, flt=flt))
    return ok(inputs=inputs_json(request, loupe, caller.app_id, records))


@get("/inputs/status", opt=READ)
@in_thread
def input_counts(loupe: Loupe, caller: Grant) -> dict:
    n = loupe.inputs.count(caller.app_id)
    return ok(counts={"processed": n, "to_process": 0, "errors": 0, "processing": 0})


@get("/inputs/{input_id:str}", opt=READ)
@in_thread
def get_input(loupe: Loupe, caller: Grant, request: Request, input_id: str) -> dict:
    record = loupe.inputs.get(caller.app_id, input_id)
    return ok(input=inputs_json(request, loupe, caller.app_id, [record])[0])


@get("/inputs/{input_id:str}/image", opt=READ)
@in_thread
def get_input_image(loupe: Loupe, caller: Grant, input_id: str) -> Response:
    data = loupe.inputs.image(caller.app_id, input_id)
    kind = _image_type(data)
    return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})


@get("/inputs/{input_id:str}/thumbnail", opt=READ)
@in_thread
def get_input_thumbnail(loupe: Loupe, caller: Grant, input_id: str) -> Response:
    """A small JPEG, made once per image (Loupe's addition, for the web page)."""
    return Response(loupe.inputs.thumbnail(caller.app_id, input_id), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=86400"})


@get("/loupe/recent-images/{sha256:str}", opt=READ)
@in_thread
def get_recent_image(loupe: Loupe, caller: Grant, sha256: str) -> Response:
    """An image sent for prediction, for an hour (predict outputs link their input by URL)."""
    data = loupe.inputs.predicted_image(caller.app_id, sha256)
    return Response(data, media_type=_image_type(data), headers={"Cache-Control": "private, max-age=3600"})


def _image_type(data: bytes) -> str:
    for magic, kind in ((b"\xff\xd8", "image/jpeg"), (b"\x89PNG", "image/png"), (b"GIF8", "image/gif"),
                        (b"RIFF", "image/webp"), (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"),
                        (b"MM\x00*", "image/tiff")):
        if data.startswith(magic):
            return kind
    return "application/octet-stream"


@patch("/inputs", opt=LABEL)
@in_thread
def patch_inputs(loupe: Loupe, caller: Grant, request: Request, body: RawBody) -> dict:
    req = decode(body, PatchInputs)
    edits = []
    for wire_input in req.inputs:
        if not wire_input.id:
            raise ApiError(400, 11102, "each input to patch needs its id")
        data = wire_input.data
        positive, negative = split_concepts(loupe, caller.app_id, data.concepts)
        geo, regions = stored_geo(data), stored_regions(loupe, caller.app_id, data.regions)
        if req.action == "remove":
            # Clients send value 1.0 with remove: match by id, whatever the value says.
            edits.append(InputEdit(input_id=wire_input.id, concepts=positive + negative, metadata=data.metadata,
                                   geo=geo, regions=regions))
        else:
            edits.append(InputEdit(input_id=wire_input.id, concepts=positive, not_concepts=negative,
                                   metadata=data.metadata, geo=geo, regions=regions))
    records = loupe.inputs.edit(caller.app_id, req.action, edits, by=caller.actor)
    return ok(inputs=inputs_json(request, loupe, caller.app_id, records))


@delete("/inputs/{input_id:str}", status_code=200, opt=MANAGE)
@in_thread
def delete_input(loupe: Loupe, caller: Grant, input_id: str) -> dict:
    loupe.inputs.delete(caller.app_id, [input_id], by=caller.actor)
    return ok()


@delete("/inputs", status_code=200, opt=MANAGE)
@in_thread
def delete_inputs(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    req = decode(body, DeleteMany)
    if req.delete_all:
        loupe.inputs.delete_all(caller.app_id, by=caller.actor)
    elif req.ids:
        loupe.inputs.delete(caller.app_id, req.ids, by=caller.actor)
    else:
        raise ApiError(400, 11102, "give ids to delete, or delete_all: true")
    return ok()


ROUTES = [add_inputs, list_inputs, input_counts, get_input, get_input_image, get_input_thumbnail, patch_inputs,
          delete_input, delete_inputs, get_recent_image]
