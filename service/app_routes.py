"""Loupe's own read-only view of the caller's app (for the web page): backbone, counts, models."""

from __future__ import annotations

from litestar import get

from loupe.accounts.access import Grant
from loupe.application import Loupe
from loupe.service.auth import READ
from loupe.service.clarifai_json import timestamp, unlabeled_json, version_status
from loupe.service.common import ok
from loupe.service.threads import in_thread


@get("/loupe/app", opt=READ)
@in_thread
def overview(loupe: Loupe, caller: Grant) -> dict:
    app = loupe.apps.get(caller.app_id)
    concepts = []
    for concept in loupe.concepts.list_page(app.id, per_page=1000):
        positives, negatives = loupe.concepts.counts(app.id, concept.id)
        concepts.append({"id": concept.id, "name": concept.name, "positives": positives, "negatives": negatives})
    models = []
    for model in loupe.models.list_models(app.id, per_page=1000):
        version = loupe.models.version(app.id, model.id)
        models.append({"id": model.id, "name": model.name, "concept_ids": model.concept_ids,
                       "mutually_exclusive": model.mutually_exclusive,
                       "closed_environment": model.closed_environment,
                       "serving": model.serving.value, "published_version_id": model.published or None,
                       "latest_version": {"id": version.id, "status": version.status, "detail": version.detail,
                                          "status_code": version_status(version)["code"],
                                          "train_seconds": round(version.train_seconds, 3),
                                          "unlabeled": unlabeled_json(version),
                                          "created_at": timestamp(version.created_at)}})
    return ok(app={"id": app.id, "backbone": app.backbone, "embedders": app.embedders, "role": caller.role,
                   "scope": caller.key.scope.value if caller.key is not None and not caller.key.user else None,
                   "supports_text": loupe.context.backbone(app).supports_text,
                   "input_count": loupe.inputs.count(app.id),
                   "concepts": concepts, "models": models})


@get("/loupe/status", opt=READ)
@in_thread
def status(loupe: Loupe, caller: Grant) -> dict:
    """Readiness details for a key holder: why not ready, loaded backbones, training jobs."""
    facts = loupe.ready()
    return ok(ready=facts.ready, reasons=facts.reasons, backbones_loaded=facts.backbones_loaded,
              training_jobs={"all_apps": facts.training_jobs, "this_app": loupe.trainer.queue.pending(caller.app_id)})


ROUTES = [overview, status]
