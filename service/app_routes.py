"""Loupe's own read-only view of the caller's app (for the web page): backbone, counts, models."""

from __future__ import annotations

from litestar import get

from loupe.api_keys import KeyRecord
from loupe.application import Loupe
from loupe.service.clarifai_json import timestamp, unlabeled_json, version_status
from loupe.service.common import ok
from loupe.service.threads import in_thread


@get("/v2/loupe/app")
@in_thread
def overview(loupe: Loupe, key: KeyRecord) -> dict:
    app = loupe.get_app(key.app_id)
    concepts = []
    for concept in loupe.list_concepts(app.id, per_page=1000):
        positives, negatives = loupe.concept_counts(app.id, concept.id)
        concepts.append({"id": concept.id, "name": concept.name, "positives": positives, "negatives": negatives})
    models = []
    for model in loupe.models.list_models(app.id, per_page=1000):
        version = loupe.models.version(app.id, model.id)
        models.append({"id": model.id, "name": model.name, "concept_ids": model.concept_ids,
                       "mutually_exclusive": model.mutually_exclusive,
                       "closed_environment": model.closed_environment,
                       "latest_version": {"id": version.id, "status": version.status, "detail": version.detail,
                                          "status_code": version_status(version)["code"],
                                          "train_seconds": round(version.train_seconds, 3),
                                          "unlabeled": unlabeled_json(version),
                                          "created_at": timestamp(version.created_at)}})
    return ok(app={"id": app.id, "backbone": app.backbone, "embedders": app.embedders, "scope": key.scope.value,
                   "supports_text": loupe.backbone(app).supports_text, "input_count": loupe.count_inputs(app.id),
                   "concepts": concepts, "models": models})


@get("/v2/loupe/status")
@in_thread
def status(loupe: Loupe, key: KeyRecord) -> dict:
    """Readiness details for a key holder: why not ready, loaded backbones, training jobs."""
    facts = loupe.ready()
    return ok(ready=facts.ready, reasons=facts.reasons, backbones_loaded=facts.backbones_loaded,
              training_jobs={"all_apps": facts.training_jobs, "this_app": loupe.models.queue.pending(key.app_id)})


ROUTES = [overview, status]
