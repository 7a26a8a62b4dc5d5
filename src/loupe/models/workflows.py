"""Workflows: named lists of models run together over the same inputs, each image embedded once."""

from __future__ import annotations

import itertools
import time

import msgspec

from loupe.apps.context import AppContext
from loupe.errors import Conflict, InvalidArgument, ModelNotTrained, NotFound, TooLong
from loupe.ids import check_id
from loupe.intake.embedding import Embedder, Item
from loupe.models.general import GENERAL_MODEL_ID, is_builtin
from loupe.models.predictions import InputAnswer, ModelView, Predictions
from loupe.models.registry import ModelRegistry
from loupe.pagination import page_window
from loupe.store.records import SYSTEM, Actor

MAX_NODES = 20  # per workflow: each node scores every image of a run
MAX_WORKFLOWS = 200  # per app
MAX_NODE_CONCEPTS = 200  # zero-shot names per node (CLIP apps)
PUBLIC_WORKFLOWS = ("General",)  # Clarifai's public workflow of its General model


class WorkflowStep(msgspec.Struct, frozen=True):
    model_id: str  # a custom model's id, or the General model's (loupe.general_model.GENERAL_ALIASES)
    version_id: str | None = None  # None: the model's latest trained version when the workflow runs
    concepts: tuple[str, ...] = ()  # for the General model of CLIP apps: names to score (default: the app's)
    node_id: str = ""  # the client's name for the node, echoed


class Workflow(msgspec.Struct, frozen=True):
    id: str
    steps: tuple[WorkflowStep, ...]
    created_at: float


def public_workflow(workflow_id: str) -> Workflow | None:
    if workflow_id not in PUBLIC_WORKFLOWS:
        return None
    return Workflow(id=workflow_id, steps=(WorkflowStep(model_id=GENERAL_MODEL_ID, node_id="general-concept"),),
                    created_at=0.0)


def _decode(raw: bytes) -> Workflow:
    try:
        return msgspec.msgpack.decode(raw, type=Workflow)
    except msgspec.ValidationError:
        # Stored before nodes were checked (e.g. a numeric version id): shown without its nodes, so the
        # app's listing keeps working and the workflow can be deleted.
        loose = msgspec.msgpack.decode(raw)
        return Workflow(id=str(loose.get("id", "")), steps=(), created_at=float(loose.get("created_at") or 0))


class WorkflowRun(msgspec.Struct, frozen=True):
    step: WorkflowStep
    view: ModelView  # the model, with the version that answered
    answers: list[InputAnswer]  # one per input


class Workflows:
    def __init__(self, context: AppContext, registry: ModelRegistry, predictions: Predictions,
                 embedder: Embedder) -> None:
        self._context = context
        self._store = context.store
        self._registry = registry
        self._predictions = predictions
        self._embedder = embedder

    def _checked(self, app_id: str, workflow_id: str, steps: list[WorkflowStep]) -> Workflow:
        check_id("workflow", workflow_id)
        if workflow_id in PUBLIC_WORKFLOWS:
            raise Conflict(f"workflow {workflow_id!r} is a public workflow; choose another id")
        if not steps:
            raise InvalidArgument(f"workflow {workflow_id!r} needs at least one node")
        if len(steps) > MAX_NODES:
            raise InvalidArgument(f"workflow {workflow_id!r} has {len(steps)} nodes, limit is {MAX_NODES}")
        node_ids = [check_id("workflow node", s.node_id) for s in steps if s.node_id]
        if len(set(node_ids)) != len(node_ids):
            raise InvalidArgument(f"workflow {workflow_id!r}: node ids must be unique")
        for step in steps:
            if len(step.concepts) > MAX_NODE_CONCEPTS:
                raise InvalidArgument(f"a workflow node may name at most {MAX_NODE_CONCEPTS} concepts")
            for name in step.concepts:
                check_id("concept", name)
            if is_builtin(step.model_id):
                continue
            self._registry.get(app_id, step.model_id)
            if step.version_id is not None:
                self._registry.version(app_id, step.model_id, step.version_id)
        return Workflow(id=workflow_id, steps=tuple(steps), created_at=time.time())

    def save(self, app_id: str, workflows: list[tuple[str, list[WorkflowStep]]], *,
             by: Actor = SYSTEM) -> list[Workflow]:
        """Name lists of models to run together: every workflow checked first, then all stored in one
        transaction (a bad one stores none). Custom models (and named versions) must exist."""
        self._context.sync(app_id)
        checked = [self._checked(app_id, workflow_id, steps) for workflow_id, steps in workflows]
        ids = [w.id for w in checked]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("workflow ids must be unique within a request")
        with self._store.write(by) as tx:
            for workflow in checked:
                if tx.get_workflow(app_id, workflow.id) is not None:
                    raise Conflict(f"workflow {workflow.id!r} already exists")
            if len(tx.workflow_ids(app_id)) + len(checked) > MAX_WORKFLOWS:
                raise InvalidArgument(f"an app may have at most {MAX_WORKFLOWS} workflows")
            for workflow in checked:
                tx.put_workflow(app_id, workflow.id, msgspec.msgpack.encode(workflow))
        return checked

    def node_version(self, app_id: str, step: WorkflowStep) -> str:
        """The version a node runs: the one it names, else its model's latest trained one (or, untrained,
        its newest), so a listing never shows an empty version id (the Python client reads it)."""
        if step.version_id is not None:
            return step.version_id
        try:
            version = self._predictions.answering(self._context.sync(app_id), step.model_id).version
        except ModelNotTrained:
            version = self._registry.version(app_id, step.model_id)
        except NotFound:  # the model was deleted since
            return ""
        return version.id if version is not None else ""

    def get(self, app_id: str, workflow_id: str) -> Workflow:
        self._context.sync(app_id)
        with self._store.read() as tx:
            raw = tx.get_workflow(app_id, workflow_id)
        if raw is None:
            public = public_workflow(workflow_id)
            if public is not None:
                return public
            raise NotFound("workflow", workflow_id)
        return _decode(raw)

    def list_page(self, app_id: str, page: int = 1, per_page: int = 20) -> list[Workflow]:
        self._context.sync(app_id)
        offset, limit = page_window(page, per_page)
        with self._store.read() as tx:
            return [_decode(raw) for raw in itertools.islice(tx.iter_workflows(app_id), offset, offset + limit)]

    def delete(self, app_id: str, workflow_ids: list[str] | None, *, by: Actor = SYSTEM) -> int:
        """The named workflows (all or nothing: an unknown id deletes none), or every one (None)."""
        self._context.sync(app_id)
        with self._store.write(by) as tx:
            if workflow_ids is None:
                workflow_ids = tx.workflow_ids(app_id)
            for workflow_id in workflow_ids:
                if tx.get_workflow(app_id, workflow_id) is None:
                    raise NotFound("workflow", workflow_id)
            for workflow_id in dict.fromkeys(workflow_ids):
                tx.delete_workflow(app_id, workflow_id)
        return len(workflow_ids)

    def run(self, app_id: str, inputs: list[Item], steps: list[WorkflowStep],
            deadline: float) -> list[WorkflowRun]:
        """Every node over the inputs, each image (or video frame) embedded once for all of them."""
        if not steps:
            raise InvalidArgument("a workflow needs at least one model")
        app = self._context.sync(app_id)
        rows = self._embedder.rows(app, inputs)
        results = []
        for step in steps:
            if time.monotonic() > deadline:
                raise TooLong("the workflow took too long; use fewer nodes or inputs")
            view = self._predictions.answering(app, step.model_id, step.version_id)
            results.append(WorkflowRun(step, view, self._predictions.score(app, rows, view, step.concepts)))
        return results
