"""/v2/workflows: name several models (custom ones, or the General model: ImageNet-1k, zero-shot on CLIP
apps) and run them all on images or videos in one request, each image (or frame) embedded once."""

from __future__ import annotations

import time

import msgspec
from litestar import Request, delete, get, post
from litestar.params import RawBody

from loupe.accounts.access import Grant
from loupe.application import Loupe
from loupe.ids import new_id
from loupe.models.general import PUBLIC_APP_ID, imagenet_classes
from loupe.models.workflows import (
    PUBLIC_WORKFLOWS,
    Workflow,
    WorkflowStep,
    public_workflow,
)
from loupe.service.auth import MANAGE, READ
from loupe.service.clarifai_json import model_json, timestamp
from loupe.service.common import (
    OutputShape,
    answer_data,
    concept_names,
    echoed_media,
    ok,
    predict_items,
    request_deadline,
)
from loupe.service.errors import ApiError
from loupe.service.threads import in_thread
from loupe.service.wire import DeleteMany, PostWorkflowResults, WConcept, decode

MAX_RUN_INPUTS = 32
RUN_SECONDS = 60.0  # a run's scoring stops here (503); embedding is bounded by the inputs' own limits


class WModelVersionRef(msgspec.Struct):
    id: str | None = None


class WModelRef(msgspec.Struct):
    id: str = ""
    model_version: WModelVersionRef | None = None


class WNode(msgspec.Struct):
    id: str = ""
    model: WModelRef = msgspec.field(default_factory=WModelRef)
    concepts: list[WConcept] = []  # for the general model of CLIP apps: the names to score


class WWorkflow(msgspec.Struct):
    id: str = ""
    nodes: list[WNode] = []


class PostWorkflows(msgspec.Struct):
    workflows: list[WWorkflow] = []


def _workflow_json(loupe: Loupe, workflow: Workflow, app_id: str, public: bool = False) -> dict:
    """Node ids as the client named them, and the version each node runs (never an empty id)."""
    return {"id": workflow.id, "app_id": PUBLIC_APP_ID if public else app_id,
            "created_at": timestamp(workflow.created_at),
            "nodes": [{"id": step.node_id or f"node-{i}",
                       "model": {"id": step.model_id,
                                 "model_version": {"id": loupe.workflows.node_version(app_id, step)}}}
                      for i, step in enumerate(workflow.steps)]}


@post("/workflows", status_code=200, opt=MANAGE)
@in_thread
def create_workflows(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    req = decode(body, PostWorkflows)
    if not req.workflows:
        raise ApiError(400, 11102, "no workflows given")
    wanted = []
    for w in req.workflows:
        if any(not n.model.id for n in w.nodes):
            raise ApiError(400, 11102, "each workflow node needs model.id")
        wanted.append((w.id, [WorkflowStep(model_id=n.model.id, node_id=n.id,
                                           version_id=(n.model.model_version.id or None) if n.model.model_version
                                           else None,
                                           concepts=tuple(c.name or c.id or "" for c in n.concepts))
                              for n in w.nodes]))
    created = loupe.workflows.save(caller.app_id, wanted, by=caller.actor)
    return ok(workflows=[_workflow_json(loupe, w, caller.app_id) for w in created])


@get("/workflows", opt=READ)
@in_thread
def get_workflows(loupe: Loupe, caller: Grant, page: int = 1, per_page: int = 20) -> dict:
    found = loupe.workflows.list_page(caller.app_id, page=page, per_page=per_page)
    return ok(workflows=[_workflow_json(loupe, w, caller.app_id) for w in found])


@get("/public_workflows", opt=READ)
@in_thread
def get_public_workflows(loupe: Loupe, caller: Grant) -> dict:
    public = [w for w in (public_workflow(i) for i in PUBLIC_WORKFLOWS) if w is not None]
    return ok(workflows=[_workflow_json(loupe, w, caller.app_id, public=True) for w in public])


@get("/workflows/{workflow_id:str}", opt=READ)
@in_thread
def get_one_workflow(loupe: Loupe, caller: Grant, workflow_id: str) -> dict:
    workflow = loupe.workflows.get(caller.app_id, workflow_id)
    return ok(workflow=_workflow_json(loupe, workflow, caller.app_id, public=workflow_id in PUBLIC_WORKFLOWS))


@delete("/workflows/{workflow_id:str}", status_code=200, opt=MANAGE)
@in_thread
def delete_one_workflow(loupe: Loupe, caller: Grant, workflow_id: str) -> dict:
    loupe.workflows.delete(caller.app_id, [workflow_id], by=caller.actor)
    return ok()


@delete("/workflows", status_code=200, opt=MANAGE)
@in_thread
def delete_many_workflows(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    req = decode(body, DeleteMany)
    if not req.delete_all and not req.ids:
        raise ApiError(400, 11102, "give ids to delete, or delete_all: true")
    loupe.workflows.delete(caller.app_id, None if req.delete_all else req.ids, by=caller.actor)
    return ok()


@post("/workflows/{workflow_id:str}/results", status_code=200, opt=READ)
@in_thread
def run(loupe: Loupe, caller: Grant, request: Request, workflow_id: str, body: RawBody) -> dict:
    workflow = loupe.workflows.get(caller.app_id, workflow_id)
    req = decode(body, PostWorkflowResults)
    if not req.inputs or len(req.inputs) > MAX_RUN_INPUTS:
        raise ApiError(400, 11102, f"give 1 to {MAX_RUN_INPUTS} inputs")
    shape = OutputShape.of(loupe, caller.app_id, req.output_config)
    items = predict_items(loupe, req.inputs, req.output_config.sample_ms, request_deadline(loupe))
    runs = loupe.workflows.run(caller.app_id, items, list(workflow.steps),
                        time.monotonic() + RUN_SECONDS)
    names = {**imagenet_classes()[1], **concept_names(loupe, caller.app_id)}
    now = timestamp(time.time())
    models = {id(r): model_json(r.view, caller.app_id, full=False) for r in runs}
    out = []
    for row, (wire_input, item) in enumerate(zip(req.inputs, items)):
        outputs = [{"id": new_id(), "status": {"code": 10000, "description": "Ok"}, "created_at": now,
                    "model": models[id(r)], "data": answer_data(r.answers[row], shape, caller.app_id, names)}
                   for r in runs]
        out.append({"status": {"code": 10000, "description": "Ok"},
                    "input": {"id": wire_input.id or new_id(),
                              "data": echoed_media(request, loupe, caller.app_id, wire_input, item)},
                    "outputs": outputs})
    return ok(workflow=_workflow_json(loupe, workflow, caller.app_id, public=workflow_id in PUBLIC_WORKFLOWS),
              results=out)


ROUTES = [create_workflows, get_workflows, get_public_workflows, get_one_workflow, delete_one_workflow,
          delete_many_workflows, run]
