"""/v2/workflows: name several models (custom ones, or the General model: ImageNet-1k, zero-shot on CLIP
apps) and run them all on images in one request, each image embedded once."""

from __future__ import annotations

import time

import msgspec
from litestar import get, post
from litestar.params import RawBody

from loupe.api_keys import KeyRecord
from loupe.application import Loupe
from loupe.general_model import imagenet_classes
from loupe.ids import new_id
from loupe.service.auth import WRITE
from loupe.service.clarifai_json import timestamp
from loupe.service.common import concept_names, image_bytes, ok, request_deadline
from loupe.service.errors import ApiError
from loupe.service.threads import in_thread
from loupe.service.wire import WConcept, WInput, decode
from loupe.workflow import (
    Workflow,
    WorkflowStep,
    get_workflow,
    list_workflows,
    run_workflow,
    save_workflow,
)


class WModelRef(msgspec.Struct):
    id: str = ""
    model_version: dict = {}
    output_info: dict = {}


class WNode(msgspec.Struct):
    id: str = ""
    model: WModelRef = msgspec.field(default_factory=WModelRef)
    concepts: list[WConcept] = []  # for the general model: the names to score


class WWorkflow(msgspec.Struct):
    id: str = ""
    nodes: list[WNode] = []


class PostWorkflows(msgspec.Struct):
    workflows: list[WWorkflow] = []


class PostWorkflowResults(msgspec.Struct):
    inputs: list[WInput] = []


def _workflow_json(workflow: Workflow, app_id: str) -> dict:
    return {"id": workflow.id, "app_id": app_id, "created_at": timestamp(workflow.created_at),
            "nodes": [{"id": f"node-{i}", "model": {"id": s.model_id, "model_version": {"id": s.version_id or ""}}}
                      for i, s in enumerate(workflow.steps)]}


@post("/v2/workflows", status_code=200, guards=WRITE)
@in_thread
def create_workflows(loupe: Loupe, key: KeyRecord, body: RawBody) -> dict:
    req = decode(body, PostWorkflows)
    if not req.workflows:
        raise ApiError(400, 11102, "no workflows given")
    created = []
    for w in req.workflows:
        steps = [WorkflowStep(model_id=n.model.id, version_id=n.model.model_version.get("id") or None,
                              concepts=tuple(c.name or c.id or "" for c in n.concepts)) for n in w.nodes]
        if any(not s.model_id for s in steps):
            raise ApiError(400, 11102, "each workflow node needs model.id")
        created.append(save_workflow(loupe, key.app_id, w.id, steps))
    return ok(workflows=[_workflow_json(w, key.app_id) for w in created])


@get("/v2/workflows")
@in_thread
def get_workflows(loupe: Loupe, key: KeyRecord) -> dict:
    return ok(workflows=[_workflow_json(w, key.app_id) for w in list_workflows(loupe, key.app_id)])


@post("/v2/workflows/{workflow_id:str}/results", status_code=200)
@in_thread
def run(loupe: Loupe, key: KeyRecord, workflow_id: str, body: RawBody) -> dict:
    workflow = get_workflow(loupe, key.app_id, workflow_id)
    req = decode(body, PostWorkflowResults)
    if not req.inputs or len(req.inputs) > 32:
        raise ApiError(400, 11102, "give 1 to 32 inputs")
    deadline = request_deadline(loupe)
    images = [image_bytes(loupe, w.data.image, i, deadline) for i, w in enumerate(req.inputs)]
    results = run_workflow(loupe, key.app_id, images, list(workflow.steps))
    names = {**imagenet_classes()[1], **concept_names(loupe, key.app_id)}
    now = timestamp(time.time())
    out = []
    for row, wire_input in enumerate(req.inputs):
        outputs = []
        for result in results:
            prediction = result.predictions[row]
            outputs.append({"id": new_id(), "status": {"code": 10000, "description": "Ok"}, "created_at": now,
                            "model": {"id": result.model_id, "name": result.model_id, "app_id": key.app_id,
                                      "model_version": {"id": prediction.version_id}},
                            "data": {"concepts": [{"id": c.concept_id, "name": names.get(c.concept_id, c.concept_id),
                                                   "value": round(c.value, 6), "app_id": key.app_id}
                                                  for c in prediction.concepts[:20]]}})
        out.append({"status": {"code": 10000, "description": "Ok"},
                    "input": {"id": wire_input.id or new_id()}, "outputs": outputs})
    return ok(workflow=_workflow_json(workflow, key.app_id), results=out)


ROUTES = [create_workflows, get_workflows, run]
