"""The zero-shot "general" model (CLIP text tower) and workflows: several models, one embedding per image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import numpy as np

from loupe.embedding_cache import embed_once
from loupe.errors import CapabilityMissing, InvalidArgument
from loupe.heads import head_probabilities
from loupe.imaging import decode_image
from loupe.prediction import ConceptScore, Prediction

if TYPE_CHECKING:
    from loupe.application import Loupe

GENERAL_MODEL_ID = "general"
PROMPT = "a photo of a {}."
# CLIP's trained logit scale is ~100; it turns cosine gaps of a few hundredths into clear answers.
LOGIT_SCALE = 100.0


class WorkflowStep(msgspec.Struct, frozen=True):
    model_id: str  # a custom model's id, or "general"
    version_id: str | None = None
    concepts: tuple[str, ...] = ()  # for "general": names to score (default: the app's concepts)


class WorkflowResult(msgspec.Struct, frozen=True):
    model_id: str
    predictions: list[Prediction]  # one per image


def general_predictions(loupe: Loupe, app_id: str, vectors: np.ndarray, names: list[str] | tuple[str, ...] = ()) -> list[Prediction]:
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
        out.append(Prediction(version_id=GENERAL_MODEL_ID, neighbours=[],
                              concepts=[ConceptScore(names[j], float(row[j])) for j in order]))
    return out


def run_workflow(loupe: Loupe, app_id: str, images: list[bytes], steps: list[WorkflowStep]) -> list[WorkflowResult]:
    if not steps:
        raise InvalidArgument("a workflow needs at least one model")
    app = loupe.get_app(app_id)
    decoded = [decode_image(data, loupe.config.images) for data in images]
    vectors = embed_once(loupe.store, loupe.backbone(app), decoded).vectors  # once, for every step
    results = []
    for step in steps:
        if step.model_id == GENERAL_MODEL_ID:
            predictions = general_predictions(loupe, app_id, vectors, step.concepts)
        else:
            predictions = loupe.models.predict_vectors(app_id, step.model_id, vectors, step.version_id)
        results.append(WorkflowResult(step.model_id, predictions))
    return results
