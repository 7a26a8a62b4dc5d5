"""Workflows (several models, one embedding per image) and the zero-shot General model of CLIP apps."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from loupe.errors import CapabilityMissing, Conflict, InvalidArgument, NotFound
from loupe.general_model import general_version_id, is_general
from loupe.heads import head_probabilities
from loupe.ids import check_id
from loupe.prediction import ConceptScore, Prediction

if TYPE_CHECKING:
    from loupe.application import Loupe

PROMPT = "a photo of a {}."
# CLIP's trained logit scale is ~100; it turns cosine gaps of a few hundredths into clear answers.
LOGIT_SCALE = 100.0


class WorkflowStep(msgspec.Struct, frozen=True):
    model_id: str  # a custom model's id, or the General model's (loupe.general_model.GENERAL_ALIASES)
    version_id: str | None = None
    concepts: tuple[str, ...] = ()  # for the General model of CLIP apps: names to score (default: the app's)


class Workflow(msgspec.Struct, frozen=True):
    id: str
    steps: tuple[WorkflowStep, ...]
    created_at: float


def save_workflow(loupe: Loupe, app_id: str, workflow_id: str, steps: list[WorkflowStep]) -> Workflow:
    """Name a list of models to run together; custom models must exist (the general one always does)."""
    check_id("workflow", workflow_id)
    if not steps:
        raise InvalidArgument("a workflow needs at least one model")
    for step in steps:
        if not is_general(step.model_id):
            loupe.models.get(app_id, step.model_id)
    workflow = Workflow(id=workflow_id, steps=tuple(steps), created_at=time.time())
    with loupe.store.write() as tx:
        if tx.get_workflow(app_id, workflow_id) is not None:
            raise Conflict(f"workflow {workflow_id!r} already exists")
        tx.put_workflow(app_id, workflow_id, msgspec.msgpack.encode(workflow))
    return workflow


def get_workflow(loupe: Loupe, app_id: str, workflow_id: str) -> Workflow:
    loupe.get_app(app_id)
    with loupe.store.read() as tx:
        raw = tx.get_workflow(app_id, workflow_id)
    if raw is None:
        raise NotFound("workflow", workflow_id)
    return msgspec.msgpack.decode(raw, type=Workflow)


def list_workflows(loupe: Loupe, app_id: str) -> list[Workflow]:
    loupe.get_app(app_id)
    with loupe.store.read() as tx:
        return [msgspec.msgpack.decode(raw, type=Workflow) for raw in tx.iter_workflows(app_id)]


class WorkflowResult(msgspec.Struct, frozen=True):
    model_id: str
    predictions: list[Prediction]  # one per image


def zero_shot_predictions(loupe: Loupe, app_id: str, vectors: np.ndarray,
                          names: list[str] | tuple[str, ...] = ()) -> list[Prediction]:
    """Zero-shot: score each name by the similarity of the image to a caption of it (softmax over names)."""
    app = loupe.get_app(app_id)
    backbone = loupe.backbone(app)
    if not backbone.supports_text:
        raise CapabilityMissing(f"the general model needs a text-capable backbone; app {app_id!r} uses {app.backbone}")
    if not names:
        names = [c.name for c in loupe.list_concepts(app_id, per_page=1000)]
    if not names:
        raise InvalidArgument("give concept names to score, or add concepts to the app")
    text = backbone.embed_text([PROMPT.format(n) for n in names])
    probs = head_probabilities(LOGIT_SCALE * (vectors @ text.T), mutually_exclusive=True)
    out = []
    for row in probs:
        order = np.argsort(-row, kind="stable")
        out.append(Prediction(version_id=general_version_id(backbone), neighbours=[],
                              concepts=[ConceptScore(names[j], float(row[j])) for j in order]))
    return out


def run_workflow(loupe: Loupe, app_id: str, images: list[bytes], steps: list[WorkflowStep]) -> list[WorkflowResult]:
    if not steps:
        raise InvalidArgument("a workflow needs at least one model")
    app = loupe.get_app(app_id)
    embedded = loupe.image_embedded(app, images)  # once, for every step
    vectors = embedded.vectors
    results = []
    for step in steps:
        if is_general(step.model_id):
            predictions = loupe.general_predictions(app, vectors, embedded.norms, step.concepts)
        else:
            predictions = loupe.models.predict_vectors(app_id, step.model_id, vectors, step.version_id)
        results.append(WorkflowResult(step.model_id, predictions))
    return results
