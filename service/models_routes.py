"""/v2/models: models, versions (train), outputs (predict), metrics (evaluate), feedback, advice."""

from __future__ import annotations

import asyncio
import functools
import time

import anyio.to_thread
import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.params import RawBody

from loupe.accounts.access import Grant
from loupe.accounts.roles import Permission
from loupe.application import Loupe
from loupe.ids import new_id
from loupe.models.general import imagenet_classes, is_general
from loupe.service.auth import LABEL, MANAGE, READ
from loupe.service.clarifai_json import (
    model_json,
    timestamp,
    version_json,
)
from loupe.service.common import (
    OutputShape,
    answer_data,
    computed,
    concept_names,
    concept_ref,
    echoed_media,
    inputs_json,
    ok,
    predict_items,
    prediction_loupe,
    request_deadline,
)
from loupe.service.errors import ApiError
from loupe.service.threads import in_thread
from loupe.service.wire import (
    DeleteMany,
    PatchModels,
    PostModel,
    PostModelSearches,
    PostOutputs,
    WModelLoupe,
    WOutputConfig,
    decode,
)
from loupe.store.records import Model, ModelVersion, Serving


def _model_out(loupe: Loupe, app_id: str, model: Model, version: ModelVersion | None = None) -> dict:
    """One model asked for by id: output_info in full (its concepts, no `message`)."""
    view = loupe.predictions.describe(app_id, model.id, version.id if version is not None else None)
    return model_json(view, app_id, full=True)


@get("/models", opt=READ)
@in_thread
def list_models(loupe: Loupe, caller: Grant, page: int = 1, per_page: int = 20) -> dict:
    """The built-in models (public, app "main", as Clarifai lists them) first, then the app's."""
    views = loupe.predictions.list_page(caller.app_id, page=page, per_page=per_page)
    return ok(models=[model_json(v, caller.app_id, full=False) for v in views])


@post("/models", status_code=200, opt=LABEL)
@in_thread
def create_model(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    req = decode(body, PostModel).model
    if not req.id:
        raise ApiError(400, 11102, "model.id is required")
    info = req.output_info
    concepts = [concept_ref(loupe, caller.app_id, c) for c in (info.data.concepts if info else [])]
    config = info.output_config if info else None
    model, version = loupe.models.create(
        caller.app_id, req.id, name=req.name, concept_ids=concepts,
        mutually_exclusive=bool(config and config.concepts_mutually_exclusive),
        closed_environment=bool(config and config.closed_environment),
        hyper_params=config.hyper_params if config else None,
        serving=(req.loupe.serving if req.loupe else None) or Serving.LATEST,
        target_precision=req.loupe.target_precision if req.loupe else None,
        concept_precision=req.loupe.concept_precision if req.loupe else None, by=caller.actor)
    return ok(model=_model_out(loupe, caller.app_id, model, version))


@post("/models/searches", status_code=200, opt=READ)
@in_thread
def search_models(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    query = decode(body, PostModelSearches).model_query
    found = loupe.predictions.search(caller.app_id, query.name, query.type)
    return ok(models=[model_json(v, caller.app_id, full=False) for v in found])


@patch("/models", opt=MANAGE)
@in_thread
def patch_models(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    req = decode(body, PatchModels)
    out = []
    for wire_model in req.models:
        if not wire_model.id:
            raise ApiError(400, 11102, "each model to patch needs its id")
        info = wire_model.output_info
        concepts = None
        if info is not None and (info.data.concepts or req.action == "overwrite"):
            concepts = [concept_ref(loupe, caller.app_id, c) for c in info.data.concepts]
        config = info.output_config if info is not None else None
        lifecycle = wire_model.loupe or WModelLoupe()
        model = loupe.models.update(
            caller.app_id, wire_model.id, req.action, name=wire_model.name, concept_ids=concepts,
            mutually_exclusive=config.concepts_mutually_exclusive if config else None,
            closed_environment=config.closed_environment if config else None,
            hyper_params=config.hyper_params if config else None,
            serving=lifecycle.serving, target_precision=lifecycle.target_precision,
            concept_precision=lifecycle.concept_precision, publish=lifecycle.published_version_id,
            by=caller.actor)
        out.append(_model_out(loupe, caller.app_id, model))
    return ok(models=out)


@delete("/models", status_code=200, opt=MANAGE)
@in_thread
def delete_models(loupe: Loupe, caller: Grant, body: RawBody) -> dict:
    req = decode(body, DeleteMany)
    if req.delete_all:
        loupe.models.delete_all(caller.app_id, by=caller.actor)
    elif req.ids:
        loupe.models.delete_many(caller.app_id, req.ids, by=caller.actor)
    else:
        raise ApiError(400, 11102, "give ids to delete, or delete_all: true")
    return ok()


@get("/models/{model_id:str}", opt=READ)
@in_thread
def get_model(loupe: Loupe, caller: Grant, model_id: str, version_id: str | None = None) -> dict:
    return _model_answer(loupe, caller, model_id, version_id)


def _model_answer(loupe: Loupe, caller: Grant, model_id: str, version_id: str | None) -> dict:
    view = loupe.predictions.describe(caller.app_id, model_id, version_id)
    return ok(model=model_json(view, caller.app_id, full=True))


@delete("/models/{model_id:str}", status_code=200, opt=MANAGE)
@in_thread
def delete_model(loupe: Loupe, caller: Grant, model_id: str) -> dict:
    loupe.models.delete(caller.app_id, model_id, by=caller.actor)
    return ok()


@get(["/models/{model_id:str}/output_info", "/models/{model_id:str}/versions/{version_id:str}/output_info"], opt=READ)
@in_thread
def output_info(loupe: Loupe, caller: Grant, model_id: str, version_id: str | None = None) -> dict:
    return _model_answer(loupe, caller, model_id, version_id)


@get("/models/{model_id:str}/versions", opt=READ)
@in_thread
def list_versions(loupe: Loupe, caller: Grant, model_id: str, page: int = 1, per_page: int = 20) -> dict:
    versions = loupe.predictions.versions(caller.app_id, model_id, page=page, per_page=per_page)
    return ok(model_versions=[version_json(v) for v in versions])


@post("/models/{model_id:str}/versions", status_code=200, opt=LABEL)
async def train(loupe: Loupe, caller: Grant, model_id: str) -> dict:
    """Small trains finish before the answer (status 21100); large ones answer 21103 and go on. The
    wait for the training queue is awaited, so waiting requests hold no worker thread."""
    ticket = await anyio.to_thread.run_sync(
        functools.partial(loupe.trainer.submit_train, caller.app_id, model_id, by=caller.actor))
    if ticket.wait:
        await asyncio.wrap_future(ticket.done)
    return await anyio.to_thread.run_sync(_model_answer, loupe, caller, model_id, ticket.version.id)


@get("/models/{model_id:str}/versions/{version_id:str}", opt=READ)
@in_thread
def get_version(loupe: Loupe, caller: Grant, model_id: str, version_id: str) -> dict:
    return ok(model_version=version_json(loupe.predictions.version(caller.app_id, model_id, version_id)))


@delete("/models/{model_id:str}/versions/{version_id:str}", status_code=200, opt=MANAGE)
@in_thread
def delete_version(loupe: Loupe, caller: Grant, model_id: str, version_id: str) -> dict:
    loupe.models.delete_version(caller.app_id, model_id, version_id, by=caller.actor)
    return ok()


@post("/models/{model_id:str}/versions/{version_id:str}/metrics", status_code=200, opt=LABEL)
@in_thread
def evaluate(loupe: Loupe, caller: Grant, model_id: str, version_id: str) -> dict:
    version = loupe.quality.evaluate(caller.app_id, model_id, version_id, wait=False, by=caller.actor)
    return ok(model_version=version_json(version))


@get("/models/{model_id:str}/versions/{version_id:str}/metrics", opt=READ)
@in_thread
def get_metrics(loupe: Loupe, caller: Grant, model_id: str, version_id: str) -> dict:
    version = loupe.models.version(caller.app_id, model_id, version_id)
    out = version_json(version)
    if version.evaluation is None:
        out["metrics"] = {"status": {"code": 21302, "description": "Model not yet evaluated"}}
    return ok(model_version=out)


@post(["/models/{model_id:str}/outputs", "/models/{model_id:str}/versions/{version_id:str}/outputs"],
      status_code=200, opt=READ)
@in_thread
def predict(loupe: Loupe, caller: Grant, request: Request, model_id: str, body: RawBody,
            version_id: str | None = None) -> dict:
    req = decode(body, PostOutputs)
    if not req.inputs:
        raise ApiError(400, 11102, "no inputs to predict")
    if len(req.inputs) > 128:
        raise ApiError(400, 11102, f"at most 128 inputs per request, got {len(req.inputs)}")
    config = req.model.output_info.output_config if req.model and req.model.output_info else WOutputConfig()
    shape = OutputShape.of(loupe, caller.app_id, config)
    items = predict_items(loupe, req.inputs, config.sample_ms, request_deadline(loupe))
    answer = loupe.predictions.predict(caller.app_id, model_id, items, version_id)
    model_out = model_json(answer.view, caller.app_id, full=False)
    names = {**concept_names(loupe, caller.app_id), **(imagenet_classes()[1] if is_general(model_id) else {})}
    now = timestamp(time.time())
    outputs = []
    for wire_input, item, result in zip(req.inputs, items, answer.answers):
        output: dict = {"id": new_id(), "status": {"code": 10000, "description": "Ok"}, "created_at": now,
                        "model": model_out,
                        "input": {"id": wire_input.id or new_id(),
                                  "data": echoed_media(request, loupe, caller.app_id, wire_input, item)},
                        "data": answer_data(result, shape, caller.app_id, names)}
        if result.prediction is not None and not answer.view.public:
            # Loupe's addition beside Clarifai's `data`, never inside it (the Java client reads every
            # array under `data` as predictions): the labeled neighbours that voted, each concept's
            # threshold, the concepts that meet theirs, and whether to act on the answer at all.
            output["loupe"] = prediction_loupe(result.prediction, answer.version)
        outputs.append(output)
    return ok(outputs=outputs)


@get(["/models/{model_id:str}/inputs", "/models/{model_id:str}/versions/{version_id:str}/inputs"], opt=READ)
@in_thread
def model_inputs(loupe: Loupe, caller: Grant, request: Request, model_id: str, page: int = 1,
                 per_page: int = 20, version_id: str | None = None) -> dict:
    """The inputs annotated (positively) with the model's (or the version's) concepts."""
    concepts = (loupe.models.version(caller.app_id, model_id, version_id).concept_ids if version_id
                else loupe.models.get(caller.app_id, model_id).concept_ids)
    records = loupe.inputs.labeled_with(caller.app_id, concepts, page=page, per_page=per_page)
    return ok(inputs=inputs_json(request, loupe, caller.app_id, records))


@post(["/models/{model_id:str}/feedback", "/models/{model_id:str}/versions/{version_id:str}/feedback",
       "/searches/feedback"], status_code=200, opt=READ)
@in_thread
def feedback(loupe: Loupe, caller: Grant, request: Request, body: RawBody,
             model_id: str | None = None, version_id: str | None = None) -> dict:
    """Accepted and stored with the app (a person's verdict on an answer), for later review. Any key of
    the app may send it (clients send it beside predictions), about the app's own models only."""
    if len(body) > loupe.config.max_feedback_bytes:  # refused before decoding, not after
        raise ApiError(400, 11102, f"feedback is {len(body)} bytes, limit is {loupe.config.max_feedback_bytes}")
    loupe.feedback.store(caller.app_id, decode(body, dict), model_id=model_id, version_id=version_id,
                         route=request.url.path, by=caller.actor)
    return ok()


@get("/models/{model_id:str}/advice", opt=READ)
async def advice(loupe: Loupe, caller: Grant, model_id: str) -> dict | Response:
    """Loupe's data-quality findings for the model (not a Clarifai route; the web page uses it). A
    computation runs as a job: the request waits for it up to COMPUTE_WAIT_SECONDS, then answers 202."""
    future = await anyio.to_thread.run_sync(functools.partial(
        loupe.quality.advice, caller.app_id, model_id, compute=caller.may(Permission.LABEL)))
    return await computed(future, lambda findings: ok(findings=[msgspec.to_builtins(f) for f in findings]))


@get("/models/{model_id:str}/suggestions", opt=READ)
async def suggestions(loupe: Loupe, caller: Grant, model_id: str, count: int = 12) -> dict | Response:
    """Loupe's addition: unlabeled inputs to label next, best first, with the model's current guess."""
    future = await anyio.to_thread.run_sync(functools.partial(
        loupe.quality.suggestions, caller.app_id, model_id, count, compute=caller.may(Permission.LABEL)))
    return await computed(future, lambda found: ok(suggestions=[msgspec.to_builtins(s) for s in found]))


@post(["/models/{model_id:str}/publish", "/models/{model_id:str}/versions/{version_id:str}/publish"],
      status_code=200, opt=MANAGE)
@in_thread
def publish(loupe: Loupe, caller: Grant, model_id: str, version_id: str | None = None) -> dict:
    """Loupe's: make a trained version (the newest, if none is named) what version-less predictions of
    a `published` model get."""
    model = loupe.models.publish(caller.app_id, model_id, version_id, by=caller.actor)
    return ok(model=_model_out(loupe, caller.app_id, model))


@post("/models/{model_id:str}/rollback", status_code=200, opt=MANAGE)
@in_thread
def rollback(loupe: Loupe, caller: Grant, model_id: str) -> dict:
    """Loupe's: publish again what was published before."""
    model = loupe.models.rollback(caller.app_id, model_id, by=caller.actor)
    return ok(model=_model_out(loupe, caller.app_id, model))


@get("/models/{model_id:str}/versions/{version_id:str}/changes", opt=READ)
@in_thread
def changes(loupe: Loupe, caller: Grant, model_id: str, version_id: str, against: str | None = None) -> dict:
    """Loupe's change report: what this version would answer differently from `against` (default: the
    published version, or the trained one before), and both versions' per-concept held-out metrics."""
    return ok(report=msgspec.to_builtins(loupe.changes.report(caller.app_id, model_id, version_id, against)))


@get("/models/{model_id:str}/drift", opt=READ)
@in_thread
def drift(loupe: Loupe, caller: Grant, model_id: str, days: int = 30) -> dict:
    """Loupe's drift counters: per day, predictions, out-of-scope and unsure ones, the mean similarity to
    the nearest labeled example; and the recent out-of-scope images (worth labeling)."""
    return ok(drift=msgspec.to_builtins(loupe.drift.report(caller.app_id, model_id, days)))


class PostDismissal(msgspec.Struct):
    input_id: str
    concept_id: str


@post("/models/{model_id:str}/advice/dismissals", status_code=200, opt=LABEL)
@in_thread
def dismiss(loupe: Loupe, caller: Grant, model_id: str, body: RawBody) -> dict:
    """The label of a suspected mislabel is right: the finding is not reported again for this model."""
    req = decode(body, PostDismissal)
    loupe.quality.dismiss(caller.app_id, model_id, req.input_id, req.concept_id, by=caller.actor)
    return ok()


ROUTES = [list_models, create_model, search_models, patch_models, delete_models, get_model, delete_model,
          output_info, list_versions, train, get_version, delete_version, evaluate, get_metrics, predict,
          model_inputs, feedback, advice, dismiss, suggestions, publish, rollback, changes, drift]
