"""An app's custom models and their versions: create, change, list, delete; versions are written here only.

A model names concepts; each train makes an immutable version (loupe.models.trainer).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from loupe.apps.context import AppContext
from loupe.errors import Conflict, InvalidArgument, ModelNotTrained, NotFound, TrainFailure
from loupe.ids import check_id, check_name, new_id
from loupe.intake.labels import EditAction, check_metadata
from loupe.learning.values import EvaluationStatus
from loupe.models.cache import ModelCache
from loupe.models.general import is_builtin
from loupe.pagination import page_window
from loupe.store import ReadTxn, WriteTxn
from loupe.store.records import (
    MAX_PUBLICATIONS,
    SYSTEM,
    Actor,
    Evaluation,
    Job,
    JobKind,
    Model,
    ModelVersion,
    Publication,
    Serving,
    VersionStatus,
)


def _train_interrupted(version: ModelVersion, why: str) -> dict[str, Any]:
    if version.status not in (VersionStatus.QUEUED, VersionStatus.TRAINING):
        return {}
    return {"status": VersionStatus.FAILED, "failure": TrainFailure.ERROR, "detail": f"interrupted: {why}; train again"}


def _evaluation_interrupted(version: ModelVersion, why: str) -> dict[str, Any]:
    evaluation = version.evaluation
    if evaluation is None or evaluation.status not in (EvaluationStatus.QUEUED, EvaluationStatus.EVALUATING):
        return {}
    return {"evaluation": Evaluation(status=EvaluationStatus.FAILED, created_at=time.time(),
                                     detail=f"interrupted {why}; evaluate again")}


def _lifecycle_changes(model: Model, serving: Serving | str | None, target_precision: float | None,
                       concept_precision: dict[str, float] | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if serving is not None:
        try:
            changes["serving"] = Serving(serving)
        except ValueError:
            raise InvalidArgument(f"serving must be latest or published, got {serving!r}") from None
    if target_precision is not None:
        changes["target_precision"] = _checked_precision(target_precision)
    if concept_precision is not None:
        changes["concept_precision"] = {check_id("concept", c): _checked_precision(p)
                                        for c, p in concept_precision.items()}
    return changes


def _checked_precision(value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.5 <= value < 1.0:
        raise InvalidArgument(f"a target precision is a number from 0.5 to below 1, got {value!r}")
    return float(value)


def _newest_trained(tx: ReadTxn, app_id: str, model_id: str) -> ModelVersion | None:
    return next((v for v in tx.iter_versions(app_id, model_id) if v.status is VersionStatus.TRAINED), None)


def _previously_published(model: Model) -> str | None:
    """What was published before the current publication: publications push, rollbacks pop."""
    stack: list[str] = []
    for record in model.publications:
        if record.rollback and stack:
            stack.pop()
            if not stack or stack[-1] != record.version_id:
                stack.append(record.version_id)
        else:
            stack.append(record.version_id)
    return stack[-2] if len(stack) >= 2 else None


def _workflow_versions(tx: ReadTxn, app_id: str) -> set[str]:
    """Version ids the app's workflows name. Read loosely (a workflow is msgpack of id, steps, ...), so
    that a record stored before nodes were checked cannot stop a prune."""
    named = set()
    for raw in tx.iter_workflows(app_id):
        record = msgspec.msgpack.decode(raw)
        for step in (record.get("steps") or []) if isinstance(record, dict) else []:
            if isinstance(step, dict) and isinstance(step.get("version_id"), str):
                named.add(step["version_id"])
    return named


class ModelRegistry:
    def __init__(self, context: AppContext, cache: ModelCache) -> None:
        self._context = context
        self._store = context.store
        self._cache = cache

    def recover_interrupted(self) -> int:
        """At start-up: trains and evaluations that a crash or kill cut short are marked failed (with a
        reason) instead of staying 'training' forever. Returns how many were found."""
        found = 0
        with self._store.write() as tx:
            for app in tx.list_apps():
                for model in list(tx.iter_models(app.id)):
                    for version in list(tx.iter_versions(app.id, model.id)):
                        changes = {**_train_interrupted(version, "the server stopped while this version was training"),
                                   **_evaluation_interrupted(version, "by a server stop")}
                        if changes:
                            tx.put_version(app.id, msgspec.structs.replace(version, **changes))
                            found += 1
        return found

    @staticmethod
    def fail_orphaned(tx: WriteTxn, app_id: str, job: Job) -> None:
        """A job whose process died (loupe.models.jobs): its version or evaluation is failed, not left
        'queued', 'training' or 'evaluating'."""
        version = tx.get_version(app_id, job.model_id, job.version_id)
        if version is None:
            return
        why = f"the server process (pid {job.owner.pid}) that had it stopped"
        changes = (_train_interrupted(version, why) if job.kind is JobKind.TRAIN
                   else _evaluation_interrupted(version, why))
        if changes:
            tx.put_version(app_id, msgspec.structs.replace(version, **changes))

    # ------------------------------------------------------------- models
    def create(self, app_id: str, model_id: str, *, name: str | None = None, concept_ids: Sequence[str] = (),
               mutually_exclusive: bool = False, closed_environment: bool = False,
               auto_retrain: bool = True, hyper_params: dict[str, Any] | None = None,
               serving: Serving | str = Serving.LATEST, target_precision: float | None = None,
               concept_precision: dict[str, float] | None = None,
               by: Actor = SYSTEM) -> tuple[Model, ModelVersion]:
        """A new model with its first, untrained version (as Clarifai does on create)."""
        self._context.sync(app_id)
        check_id("model", model_id)
        if is_builtin(model_id) or is_builtin(name or ""):
            # Predictions by that id or name go to the built-in model: a custom one there would be unreachable.
            raise Conflict(f"{model_id if is_builtin(model_id) else name!r} names a built-in model; choose another")
        concepts = [check_id("concept", c) for c in dict.fromkeys(concept_ids)]
        now = time.time()
        # A fresh incarnation: a train the model's deleted namesake started cannot write into it.
        model = Model(id=model_id, name=check_name("model", name or model_id), concept_ids=concepts,
                      mutually_exclusive=mutually_exclusive, closed_environment=closed_environment,
                      auto_retrain=auto_retrain, created_at=now, next_version=2, incarnation=new_id(),
                      hyper_params=check_metadata(dict(hyper_params or {})))
        model = msgspec.structs.replace(model, **_lifecycle_changes(model, serving, target_precision,
                                                                    concept_precision))
        version = self.new_version(model, 1, VersionStatus.UNTRAINED, now)
        with self._store.write(by) as tx:
            if tx.get_model(app_id, model_id) is not None:
                raise Conflict(f"model {model_id!r} already exists")
            self._context.ensure_concepts(tx, app_id, concepts, now)
            tx.put_model(app_id, model)
            tx.put_version(app_id, version)
        return model, version

    def get(self, app_id: str, model_id: str) -> Model:
        self._context.sync(app_id)
        with self._store.read() as tx:
            model = tx.get_model(app_id, model_id)
        if model is None:
            raise NotFound("model", model_id)
        return model

    def list_models(self, app_id: str, page: int = 1, per_page: int = 20) -> list[Model]:
        """Newest first."""
        offset, limit = page_window(page, per_page)
        return self.ordered(app_id)[offset:offset + limit]

    def ordered(self, app_id: str) -> list[Model]:
        """Every model of the app, newest first."""
        self._context.sync(app_id)
        with self._store.read() as tx:
            return sorted(tx.iter_models(app_id), key=lambda m: (-m.created_at, m.id))

    def update(self, app_id: str, model_id: str, action: EditAction | str = EditAction.MERGE, *,
               name: str | None = None, concept_ids: list[str] | None = None,
               mutually_exclusive: bool | None = None, closed_environment: bool | None = None,
               auto_retrain: bool | None = None, hyper_params: dict[str, Any] | None = None,
               serving: Serving | str | None = None, target_precision: float | None = None,
               concept_precision: dict[str, float] | None = None, publish: str | None = None,
               by: Actor = SYSTEM) -> Model:
        """Rename, set options, and merge/remove/overwrite the model's concepts (takes effect on the next
        train); set its serving policy and threshold targets; `publish` a version (its id)."""
        try:
            action = EditAction(action)
        except ValueError:
            raise InvalidArgument(f"action must be merge, remove or overwrite, got {action!r}") from None
        given = [check_id("concept", c) for c in dict.fromkeys(concept_ids or [])]
        now = time.time()
        with self._store.write(by) as tx:
            model = tx.get_model(app_id, model_id)
            if model is None:
                raise NotFound("model", model_id)
            concepts = model.concept_ids
            if concept_ids is not None:
                if action is EditAction.MERGE:
                    concepts = list(dict.fromkeys(concepts + given))
                elif action is EditAction.REMOVE:
                    concepts = [c for c in concepts if c not in given]
                else:
                    concepts = given
            self._context.ensure_concepts(tx, app_id, concepts, now)
            changes: dict[str, Any] = {"concept_ids": concepts}
            if name is not None:
                changes["name"] = check_name("model", name)
            if hyper_params is not None:
                changes["hyper_params"] = check_metadata(
                    {**model.hyper_params, **hyper_params} if action is EditAction.MERGE else dict(hyper_params))
            for key, value in (("mutually_exclusive", mutually_exclusive), ("closed_environment", closed_environment),
                               ("auto_retrain", auto_retrain)):
                if value is not None:
                    changes[key] = bool(value)
            changes.update(_lifecycle_changes(model, serving, target_precision, concept_precision))
            model = msgspec.structs.replace(model, **changes)
            if publish is not None:
                model = self._published(tx, app_id, model, publish, by)
            elif model.serving is Serving.PUBLISHED and not model.published:
                # Switched to publishing: what clients get now stays what they get until a publish.
                latest = _newest_trained(tx, app_id, model_id)
                if latest is not None:
                    model = self._published(tx, app_id, model, latest.id, by)
            tx.put_model(app_id, model)
        self._cache.forget(app_id, model_id)
        return model

    def publish(self, app_id: str, model_id: str, version_id: str | None = None, *, by: Actor = SYSTEM) -> Model:
        """Make a trained version the one version-less predictions of a `published` model get (the newest
        trained one if none is named). Recorded on the model (who, when, from -> to) and in the audit."""
        self._context.sync(app_id)
        with self._store.write(by) as tx:
            model = tx.get_model(app_id, model_id)
            if model is None:
                raise NotFound("model", model_id)
            if version_id is None:
                newest = _newest_trained(tx, app_id, model_id)
                if newest is None:
                    raise ModelNotTrained(f"model {model_id!r} has no trained version to publish: train it first")
                version_id = newest.id
            model = self._published(tx, app_id, model, version_id, by)
            tx.put_model(app_id, model)
        self._cache.forget(app_id, model_id)
        return model

    def rollback(self, app_id: str, model_id: str, *, by: Actor = SYSTEM) -> Model:
        """Publish again what was published before the current publication."""
        self._context.sync(app_id)
        with self._store.write(by) as tx:
            model = tx.get_model(app_id, model_id)
            if model is None:
                raise NotFound("model", model_id)
            back = _previously_published(model)
            if back is None:
                raise Conflict(f"model {model_id!r} has no earlier published version to roll back to")
            model = self._published(tx, app_id, model, back, by, rollback=True)
            tx.put_model(app_id, model)
        self._cache.forget(app_id, model_id)
        return model

    @staticmethod
    def _published(tx: WriteTxn, app_id: str, model: Model, version_id: str, by: Actor,
                   rollback: bool = False) -> Model:
        check_id("version", version_id)
        version = tx.get_version(app_id, model.id, version_id)
        if version is None:
            raise NotFound("version", version_id, f"model {model.id!r} has no version {version_id!r}")
        if version.status is not VersionStatus.TRAINED:
            raise ModelNotTrained(f"version {version_id!r} is {version.status}; only trained versions are published")
        record = Publication(version_id=version_id, previous=model.published, at=time.time(), rollback=rollback,
                             by=by.id or by.kind.value)
        return msgspec.structs.replace(model, published=version_id,
                                       publications=[*model.publications, record][-MAX_PUBLICATIONS:])

    def delete(self, app_id: str, model_id: str, *, by: Actor = SYSTEM) -> None:
        with self._store.write(by) as tx:
            if tx.get_model(app_id, model_id) is None:
                raise NotFound("model", model_id)
            tx.delete_model(app_id, model_id)
        self._cache.forget(app_id, model_id)

    def delete_many(self, app_id: str, model_ids: list[str], *, by: Actor = SYSTEM) -> int:
        """All or nothing, in one transaction: an unknown id (or one deleted meanwhile) deletes none."""
        self._context.sync(app_id)
        wanted = list(dict.fromkeys(model_ids))
        with self._store.write(by) as tx:
            for model_id in wanted:
                if tx.get_model(app_id, model_id) is None:
                    raise NotFound("model", model_id)  # aborts the transaction: nothing deleted
            for model_id in wanted:
                tx.delete_model(app_id, model_id)
        for model_id in wanted:
            self._cache.forget(app_id, model_id)
        return len(wanted)

    def search(self, app_id: str, name: str = "*", kind: str = "") -> list[Model]:
        """Models whose name or id matches (case-insensitive, '*' wildcards); all are 'concept' models."""
        if kind and kind != "concept":
            return []
        pattern = (name or "*").lower()
        return [m for m in self.list_models(app_id, per_page=1000)
                if fnmatch.fnmatchcase(m.name.lower(), pattern) or fnmatch.fnmatchcase(m.id.lower(), pattern)]

    def delete_all(self, app_id: str, *, by: Actor = SYSTEM) -> int:
        self._context.sync(app_id)
        with self._store.write(by) as tx:
            models = list(tx.iter_models(app_id))
            for model in models:
                tx.delete_model(app_id, model.id)
        for model in models:
            self._cache.forget(app_id, model.id)
        return len(models)

    # ----------------------------------------------------------- versions
    def versions(self, app_id: str, model_id: str, page: int = 1, per_page: int = 20) -> list[ModelVersion]:
        self.get(app_id, model_id)
        offset, limit = page_window(page, per_page)
        with self._store.read() as tx:
            return list(tx.iter_versions(app_id, model_id))[offset:offset + limit]

    def version(self, app_id: str, model_id: str, version_id: str | None = None) -> ModelVersion:
        """A named version, or the newest one (whatever its status)."""
        self.get(app_id, model_id)
        with self._store.read() as tx:
            if version_id is None:
                version = next(tx.iter_versions(app_id, model_id), None)
            else:
                version = tx.get_version(app_id, model_id, version_id)
        if version is None:
            raise NotFound("version", version_id or "", f"model {model_id!r} has no version {version_id!r}")
        return version

    def delete_version(self, app_id: str, model_id: str, version_id: str, *, by: Actor = SYSTEM) -> None:
        with self._store.write(by) as tx:
            version = tx.get_version(app_id, model_id, version_id)
            if version is None:
                raise NotFound("version", version_id or "", f"model {model_id!r} has no version {version_id!r}")
            tx.delete_version(app_id, model_id, version)
        self._cache.forget(app_id, model_id)

    def prune(self, app_id: str, model_id: str | None = None, keep: int | None = None, *,
              by: Actor = SYSTEM) -> int:
        """Delete the versions the retention rule does not keep (config `keep_versions`, or `keep`), of
        one model or of every model of the app; returns how many went."""
        keep = self._context.config.keep_versions if keep is None else keep
        if keep <= 0:
            return 0
        self._context.sync(app_id)
        gone = 0
        with self._store.write(by) as tx:
            named = _workflow_versions(tx, app_id)
            models = [model_id] if model_id is not None else [m.id for m in tx.iter_models(app_id)]
            for mid in models:
                if tx.get_model(app_id, mid) is None:
                    raise NotFound("model", mid)
                model = tx.get_model(app_id, mid)
                assert model is not None
                # Published ones (now or before: a rollback goes back to them) stay too.
                kept = named | {model.published} | {p.version_id for p in model.publications}
                versions = list(tx.iter_versions(app_id, mid))  # newest first
                newest = _newest_trained(tx, app_id, mid)
                newest_trained = newest.id if newest is not None else None
                for version in versions[keep:]:
                    busy = (_train_interrupted(version, "") or _evaluation_interrupted(version, ""))
                    if version.id == newest_trained or version.id in kept or busy:
                        continue
                    tx.delete_version(app_id, mid, version)
                    gone += 1
        if gone:
            for mid in models:
                self._cache.forget(app_id, mid)
        return gone

    def new_version(self, model: Model, seq: int, status: VersionStatus, now: float) -> ModelVersion:
        return ModelVersion(id=new_id(), seq=seq, model_id=model.id, created_at=now, status=status,
                            concept_ids=list(model.concept_ids), mutually_exclusive=model.mutually_exclusive,
                            closed_environment=model.closed_environment, model_incarnation=model.incarnation)

    def set_status(self, app_id: str, version: ModelVersion, **changes: Any) -> None:
        self.write_version(app_id, msgspec.structs.replace(version, **changes))

    def write_version(self, app_id: str, version: ModelVersion, by: Actor = SYSTEM) -> None:
        with self._store.write(by) as tx:
            if not self.same_incarnation(tx, app_id, version):
                return  # deleted while training (and perhaps created anew: not this version's model)
            tx.put_version(app_id, version)
        self._cache.forget(app_id, version.model_id)

    @staticmethod
    def same_incarnation(tx: ReadTxn, app_id: str, version: ModelVersion) -> bool:
        model = tx.get_model(app_id, version.model_id)
        return model is not None and model.incarnation == version.model_incarnation
