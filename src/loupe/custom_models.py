"""Custom models of an app: CRUD, versions, training (sync or queued), prediction.

A model names concepts; each train makes an immutable version. Predictions read the version's head
and the app's *current* labels, so a label edit changes answers before any retrain.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import msgspec
import numpy as np

from loupe.advice import Finding, advise
from loupe.app_data import AppData
from loupe.errors import (
    Busy,
    Conflict,
    InvalidArgument,
    ModelNotTrained,
    NotFound,
    TooLong,
    TrainingFailed,
)
from loupe.evaluation import evaluate
from loupe.general_model import is_builtin
from loupe.heads import Head, head_probabilities
from loupe.ids import check_id, check_name, new_id
from loupe.label_mirror import AppLabels
from loupe.labels import EditAction, check_metadata
from loupe.pagination import page_window
from loupe.prediction import LoadedVersion, Prediction, predict
from loupe.scale.train_lease import TrainLeases
from loupe.semi_supervised import MAX_UNLABELED
from loupe.store import ReadTxn
from loupe.store.records import Evaluation, Model, ModelVersion, TrainLease
from loupe.suggestions import MAX_POOL, suggest
from loupe.training import MAX_TRAIN_EXAMPLES, fit_version
from loupe.training_queue import FairQueue
from loupe.training_set import LabelRule, TrainingSet, UnlabeledRule, bounded, collect, rule_of

PREDICTED_THRESHOLD = 0.5  # a predicted-concept search keeps inputs scored at least this
SCORED_CACHE_ENTRIES = 4  # (model version, labels) score tables kept; each is inputs x concepts floats


def unlabeled_seqs(labels: AppLabels, rule: LabelRule, limit: int) -> np.ndarray:
    """The app's inputs that say nothing about the model (loupe.training_set: no label at all, or in a
    closed environment none for its concepts): what self-training and "label these next" draw from; a
    fixed random sample of `limit` beyond it, to bound the work."""
    return _sample([s for s, e in list(labels.entries.items()) if rule.unlabeled(e)], limit)


def _sample(seqs: list[int], limit: int) -> np.ndarray:
    out = np.asarray(seqs, np.int64)
    return np.sort(np.random.default_rng(0).choice(out, limit, replace=False)) if len(out) > limit else out


class Suggestion(msgspec.Struct):
    input_id: str
    concept_id: str | None  # the model's current guess (None before its first train)
    value: float | None


class ModelAnswer(msgspec.Struct):
    model: Model
    version: ModelVersion  # the version that answered
    predictions: list[Prediction]


class TrainTicket(msgspec.Struct):
    version: ModelVersion  # as queued
    done: Future  # resolves when the train has finished (its outcome is on the stored version)
    wait: bool  # small enough to answer the request only once trained


# Trains run on queue threads. Once another thread has run torch, its OpenMP team's idle spinning worker
# oversubscribes 2 cores: a 16-label x 10-concept train with 50k unlabeled inputs took 2.48 s with torch's
# 2 intra-op threads and 0.91 s with 1 (0.85 s on the main thread). Small trains (most of them: few-shot
# fits are many small L-BFGS runs) therefore run single-threaded; large ones keep every thread.
ONE_THREAD_MAX_EXAMPLES = 20_000


class TorchThreads:
    """torch's intra-op thread count is process-wide: trains that want one thread share the setting, and
    the last to finish puts it back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._saved = 0

    @contextlib.contextmanager
    def one_for(self, wanted: bool) -> Iterator[None]:
        if not wanted or threading.current_thread() is threading.main_thread():
            yield
            return
        import torch

        with self._lock:
            if self._holders == 0:
                self._saved = torch.get_num_threads()
                torch.set_num_threads(1)
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    torch.set_num_threads(self._saved)


class CustomModels:
    def __init__(self, data: AppData) -> None:
        self._data = data
        self._store = data.store
        self._loaded: dict[tuple[str, str, str], LoadedVersion] = {}
        self._latest_trained: dict[tuple[str, str], str | None] = {}
        self._allow: dict[tuple[str, LabelRule], tuple[int, np.ndarray | None]] = {}
        self._cache_lock = threading.Lock()
        self._torch_threads = TorchThreads()
        # Scores of every input of an app, per (model, version, labels version): predicted-concept search.
        self._scored: OrderedDict[tuple[str, str, str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._train_locks: dict[tuple[str, str], threading.Lock] = {}  # in this process
        self._leases = TrainLeases(self._store)  # across the processes sharing the data dir
        cfg = data.config
        self.queue = FairQueue(cfg.max_concurrent_trainings, cfg.training_queue_per_app, cfg.training_queue_total)

    def close(self) -> None:
        self.queue.shutdown()

    def recover_interrupted(self) -> int:
        """At start-up: trains and evaluations that a crash or kill cut short are marked failed (with a
        reason) instead of staying 'training' forever. Returns how many were found."""
        found = 0
        with self._store.write() as tx:
            for app in tx.list_apps():
                for model in list(tx.iter_models(app.id)):
                    for version in list(tx.iter_versions(app.id, model.id)):
                        changes: dict[str, Any] = {}
                        if version.status in ("queued", "training"):
                            changes.update(status="failed", failure="error",
                                           detail="interrupted: the server stopped while this version was "
                                                  "training; train again")
                        if version.evaluation is not None and version.evaluation.status in ("queued", "evaluating"):
                            changes["evaluation"] = Evaluation(status="failed", created_at=time.time(),
                                                               detail="interrupted by a server stop; evaluate again")
                        if changes:
                            tx.put_version(app.id, msgspec.structs.replace(version, **changes))
                            found += 1
        return found

    # ------------------------------------------------------------- models
    def create(self, app_id: str, model_id: str, *, name: str | None = None, concept_ids: Sequence[str] = (),
               mutually_exclusive: bool = False, closed_environment: bool = False,
               auto_retrain: bool = True, hyper_params: dict[str, Any] | None = None) -> tuple[Model, ModelVersion]:
        """A new model with its first, untrained version (as Clarifai does on create)."""
        self._data.get_app(app_id)
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
        version = self._new_version(model, 1, "untrained", now)
        with self._store.write() as tx:
            if tx.get_model(app_id, model_id) is not None:
                raise Conflict(f"model {model_id!r} already exists")
            self._data.ensure_concepts(tx, app_id, concepts, now)
            tx.put_model(app_id, model)
            tx.put_version(app_id, version)
        return model, version

    def get(self, app_id: str, model_id: str) -> Model:
        self._data.get_app(app_id)
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
        self._data.get_app(app_id)
        with self._store.read() as tx:
            return sorted(tx.iter_models(app_id), key=lambda m: (-m.created_at, m.id))

    def update(self, app_id: str, model_id: str, action: EditAction | str = EditAction.MERGE, *,
               name: str | None = None, concept_ids: list[str] | None = None,
               mutually_exclusive: bool | None = None, closed_environment: bool | None = None,
               auto_retrain: bool | None = None, hyper_params: dict[str, Any] | None = None) -> Model:
        """Rename, set options, and merge/remove/overwrite the model's concepts (takes effect on the next train)."""
        try:
            action = EditAction(action)
        except ValueError:
            raise InvalidArgument(f"action must be merge, remove or overwrite, got {action!r}") from None
        given = [check_id("concept", c) for c in dict.fromkeys(concept_ids or [])]
        now = time.time()
        with self._store.write() as tx:
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
            self._data.ensure_concepts(tx, app_id, concepts, now)
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
            model = msgspec.structs.replace(model, **changes)
            tx.put_model(app_id, model)
        return model

    def delete(self, app_id: str, model_id: str) -> None:
        with self._store.write() as tx:
            if tx.get_model(app_id, model_id) is None:
                raise NotFound("model", model_id)
            tx.delete_model(app_id, model_id)
        self.forget(app_id, model_id)

    def delete_many(self, app_id: str, model_ids: list[str]) -> int:
        """All or nothing, in one transaction: an unknown id (or one deleted meanwhile) deletes none."""
        self._data.get_app(app_id)
        wanted = list(dict.fromkeys(model_ids))
        with self._store.write() as tx:
            for model_id in wanted:
                if tx.get_model(app_id, model_id) is None:
                    raise NotFound("model", model_id)  # aborts the transaction: nothing deleted
            for model_id in wanted:
                tx.delete_model(app_id, model_id)
        for model_id in wanted:
            self.forget(app_id, model_id)
        return len(wanted)

    def search(self, app_id: str, name: str = "*", kind: str = "") -> list[Model]:
        """Models whose name or id matches (case-insensitive, '*' wildcards); all are 'concept' models."""
        if kind and kind != "concept":
            return []
        pattern = (name or "*").lower()
        return [m for m in self.list_models(app_id, per_page=1000)
                if fnmatch.fnmatchcase(m.name.lower(), pattern) or fnmatch.fnmatchcase(m.id.lower(), pattern)]

    def delete_all(self, app_id: str) -> int:
        self._data.get_app(app_id)
        with self._store.write() as tx:
            models = list(tx.iter_models(app_id))
            for model in models:
                tx.delete_model(app_id, model.id)
        for model in models:
            self.forget(app_id, model.id)
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

    def delete_version(self, app_id: str, model_id: str, version_id: str) -> None:
        with self._store.write() as tx:
            version = tx.get_version(app_id, model_id, version_id)
            if version is None:
                raise NotFound("version", version_id or "", f"model {model_id!r} has no version {version_id!r}")
            tx.delete_version(app_id, model_id, version)
        self.forget(app_id, model_id)

    def _new_version(self, model: Model, seq: int, status: str, now: float) -> ModelVersion:
        return ModelVersion(id=new_id(), seq=seq, model_id=model.id, created_at=now, status=status,
                            concept_ids=list(model.concept_ids), mutually_exclusive=model.mutually_exclusive,
                            closed_environment=model.closed_environment, model_incarnation=model.incarnation)

    def forget_labels(self, app_id: str) -> None:
        """The app's labels were reloaded: allow-lists derived from them are void."""
        with self._cache_lock:
            for key in [k for k in self._allow if k[0] == app_id]:
                del self._allow[key]

    def forget_app(self, app_id: str) -> None:
        """Drop every cached version and 'latest trained' answer of the app's models."""
        with self._cache_lock:
            for latest in [k for k in self._latest_trained if k[0] == app_id]:
                del self._latest_trained[latest]
            for loaded in [k for k in self._loaded if k[0] == app_id]:
                del self._loaded[loaded]

    def forget(self, app_id: str, model_id: str) -> None:
        with self._cache_lock:
            self._latest_trained.pop((app_id, model_id), None)
            for key in [k for k in self._loaded if k[:2] == (app_id, model_id)]:
                del self._loaded[key]

    # ------------------------------------------------------------ training
    def train(self, app_id: str, model_id: str, *, wait: bool | None = None) -> ModelVersion:
        """Snapshot the model and create a queued version. Small trains finish before this returns
        (wait=None decides by size); large ones run on the training queue. Returns the version."""
        ticket = self.submit_train(app_id, model_id)
        if ticket.wait if wait is None else wait:
            ticket.done.result()
            return self.version(app_id, model_id, ticket.version.id)
        return ticket.version

    def submit_train(self, app_id: str, model_id: str) -> TrainTicket:
        """Queue a train; the caller may wait on `done` (an async handler awaits it without a thread).
        Raises Busy when the app (or the queue) has as many jobs as it may."""
        app = self._data.get_app(app_id)
        now = time.time()
        with self._store.write() as tx:
            model = tx.get_model(app_id, model_id)
            if model is None:
                raise NotFound("model", model_id)
            version = self._new_version(model, model.next_version, "queued", now)
            tx.put_model(app_id, msgspec.structs.replace(model, next_version=model.next_version + 1))
            tx.put_version(app_id, version)
        try:
            done = self.queue.submit(app_id, functools.partial(self._run_training, app.id, version))
        except Busy:
            with self._store.write() as tx:
                tx.delete_version(app_id, model_id, version)  # refused: no version stays 'queued'
            raise
        rule = LabelRule(tuple(version.concept_ids), version.closed_environment)
        examples = sum(1 for e in list(self._data.labels.get(app_id).entries.values()) if rule.relevant(e))
        return TrainTicket(version, done, examples <= self._data.config.sync_train_max_examples)

    def _run_training(self, app_id: str, version: ModelVersion) -> None:
        key = (app_id, version.model_id)
        with self._cache_lock:
            lock = self._train_locks.setdefault(key, threading.Lock())
        with lock, self._leases.hold(app_id, version.model_id, version.id,
                                     lambda lease: self._fail_interrupted(app_id, version.model_id, lease)):
            self._set_status(app_id, version, status="training")
            try:
                app = self._data.get_app(app_id)
                backbone = self._data.backbone(app)  # BackboneUnavailable: the app cannot be served
                # Labeled inputs first; what the unlabeled ones become is chosen in the fit.
                rule = LabelRule(tuple(version.concept_ids), version.closed_environment)
                labels = self._data.labels.get(app_id)
                everything = collect(labels, rule)
                ts = bounded(everything, MAX_TRAIN_EXAMPLES)  # a million examples: a stratified sample
                x = self._data.embeddings_of(app, ts.seqs)
                warm = self._warm_start(app_id, version)
                background = not (version.closed_environment or version.mutually_exclusive)
                pseudo = self._data.config.semi_supervised
                # The unlabeled vectors are read only when something may use them (up to 50,000 of them).
                pool = unlabeled_seqs(labels, rule, MAX_UNLABELED) if background or pseudo else np.zeros(0, np.int64)
                with self._torch_threads.one_for(len(ts.seqs) <= ONE_THREAD_MAX_EXAMPLES):
                    fitted = fit_version(x, ts, version.concept_ids, version.mutually_exclusive, warm=warm,
                                         unlabeled=self._data.embeddings_of(app, pool) if len(pool) else None,
                                         background=background, pseudo_labels=pseudo)
            except TrainingFailed as exc:
                self._set_status(app_id, version, status="failed", failure=exc.failure, detail=exc.detail)
                return
            except Exception as exc:  # noqa: BLE001 - a failed train must be visible, not lost in a thread
                self._set_status(app_id, version, status="failed", failure="error", detail=str(exc))
                raise
            background_rows = fitted.unlabeled_seen if fitted.self_training.rule is UnlabeledRule.NEGATIVES else 0
            done = msgspec.structs.replace(
                version, status="trained", detail="", backbone=app.backbone, dim=backbone.dim,
                weights=fitted.head.weights.astype(np.float32).tobytes(),
                bias=fitted.head.bias.astype(np.float32).tobytes(), blend=fitted.blend, l2=fitted.l2,
                train_size=len(everything.seqs) + background_rows,
                sampled_examples=len(ts.seqs) + background_rows if ts is not everything else 0,
                positives={c: int(n) for c, n in zip(version.concept_ids, everything.positive.sum(axis=0))},
                negatives={c: int(n) + background_rows for c, n in zip(version.concept_ids,
                                                                       everything.negative.sum(axis=0))},
                unlabeled_rule=fitted.self_training.rule, unlabeled_reason=fitted.self_training.reason,
                train_seconds=fitted.seconds, trained_at=time.time(), unlabeled_seen=fitted.unlabeled_seen,
                pseudo_labels=fitted.self_training.pseudo_labels,
                pseudo_label_weight=fitted.self_training.weight,
                self_training_strength=fitted.self_training.strength)
            self._write_version(app_id, done)

    def _fail_interrupted(self, app_id: str, model_id: str, lease: TrainLease) -> None:
        """The process that held the model's lease died mid-train: its version must not stay 'training'."""
        with self._store.read() as tx:
            version = tx.get_version(app_id, model_id, lease.version_id)
        if version is not None and version.status in ("queued", "training"):
            self._set_status(app_id, version, status="failed", failure="error",
                             detail="interrupted: the server process training this version stopped; train again")

    def _warm_start(self, app_id: str, version: ModelVersion) -> Head | None:
        try:
            previous = self._loaded_latest(app_id, version.model_id)
        except (ModelNotTrained, NotFound):
            return None
        same = (previous.version.concept_ids == version.concept_ids
                and previous.version.mutually_exclusive == version.mutually_exclusive)
        return previous.head if same else None

    def _set_status(self, app_id: str, version: ModelVersion, **changes: Any) -> None:
        self._write_version(app_id, msgspec.structs.replace(version, **changes))

    def _write_version(self, app_id: str, version: ModelVersion) -> None:
        with self._store.write() as tx:
            if not self._same_incarnation(tx, app_id, version):
                return  # deleted while training (and perhaps created anew: not this version's model)
            tx.put_version(app_id, version)
        self.forget(app_id, version.model_id)

    @staticmethod
    def _same_incarnation(tx: ReadTxn, app_id: str, version: ModelVersion) -> bool:
        model = tx.get_model(app_id, version.model_id)
        return model is not None and model.incarnation == version.model_incarnation

    # --------------------------------------------------------- evaluation
    def _examples_of(self, app_id: str, version: ModelVersion) -> tuple[TrainingSet, np.ndarray]:
        app = self._data.get_app(app_id)
        ts = collect(self._data.labels.get(app_id), rule_of(version.concept_ids, version.closed_environment,
                                                             version.unlabeled_rule))
        return ts, self._data.embeddings_of(app, ts.seqs)

    def evaluate(self, app_id: str, model_id: str, version_id: str, *, wait: bool = True) -> ModelVersion:
        """Cross-validate the version's recipe on the current labels of its concepts; store the result."""
        version = self.version(app_id, model_id, version_id)
        if version.status != "trained" or version.blend is None:
            raise ModelNotTrained(f"version {version_id!r} is {version.status}; only trained versions are evaluated")
        queued = msgspec.structs.replace(version, evaluation=Evaluation(status="queued", created_at=time.time()))
        self._write_version(app_id, queued)
        try:
            future = self.queue.submit(app_id, functools.partial(self._run_evaluation, app_id, queued))
        except Busy:
            self._update_evaluation(app_id, queued, version.evaluation)  # refused: back as it was
            raise
        if wait:
            future.result()
            return self.version(app_id, model_id, version_id)
        return queued

    def _run_evaluation(self, app_id: str, version: ModelVersion) -> None:
        self._write_version(app_id, msgspec.structs.replace(
            version, evaluation=Evaluation(status="evaluating", created_at=time.time())))
        try:
            if version.blend is None:
                raise ModelNotTrained(f"version {version.id!r} has no blend parameters: train it first")
            ts, x = self._examples_of(app_id, version)
            result = evaluate(x, ts, version.concept_ids, version.mutually_exclusive, version.blend)
        except Exception as exc:  # noqa: BLE001 - recorded on the version, then re-raised for the log
            result = Evaluation(status="failed", detail=str(exc), created_at=time.time())
            self._update_evaluation(app_id, version, result)
            raise
        self._update_evaluation(app_id, version, result)

    def _update_evaluation(self, app_id: str, version: ModelVersion, result: Evaluation | None) -> None:
        with self._store.write() as tx:
            current = tx.get_version(app_id, version.model_id, version.id)
            if current is not None and self._same_incarnation(tx, app_id, version):
                tx.put_version(app_id, msgspec.structs.replace(current, evaluation=result))
        self.forget(app_id, version.model_id)

    def advice(self, app_id: str, model_id: str, version_id: str | None = None) -> list[Finding]:
        """Data-quality findings for the model's current labels (held-out predictions of the version's recipe)."""
        if version_id is None:
            version = self._loaded_latest(app_id, model_id).version
        else:
            version = self.version(app_id, model_id, version_id)
        ts, x = self._examples_of(app_id, version)
        held = None
        if version.blend is not None and len(ts.seqs):
            held = evaluate(x, ts, version.concept_ids, version.mutually_exclusive, version.blend)
        with self._store.read() as tx:
            dismissed = tx.dismissed(app_id, model_id)
        return [f for f in advise(x, ts, version.concept_ids, version.mutually_exclusive, held)
                if not (f.kind == "suspected_mislabel" and (f.input_ids[0], f.concept_ids[0]) in dismissed)]

    def dismiss(self, app_id: str, model_id: str, input_id: str, concept_id: str) -> None:
        """A person checked a suspected mislabel and the label is right: it is not reported again (kept
        in LMDB, per model, until the model is deleted)."""
        self.get(app_id, model_id)
        self._data.get_input(app_id, input_id)
        with self._store.write() as tx:
            tx.put_dismissal(app_id, model_id, input_id, concept_id)

    # ---------------------------------------------------------- prediction
    def _loaded_latest(self, app_id: str, model_id: str, version_id: str | None = None) -> LoadedVersion:
        key = (app_id, model_id)
        if version_id is None:
            with self._cache_lock:
                cached = self._latest_trained.get(key, "")
            if cached == "":
                with self._store.read() as tx:
                    if tx.get_model(app_id, model_id) is None:
                        raise NotFound("model", model_id)
                    found = next((v for v in tx.iter_versions(app_id, model_id) if v.status == "trained"), None)
                cached = found.id if found else None
                with self._cache_lock:
                    self._latest_trained[key] = cached
            if cached is None:
                raise ModelNotTrained(f"model {model_id!r} has no trained version yet: train it first")
            version_id = cached
        loaded = self._loaded.get((app_id, model_id, version_id))
        if loaded is None:
            version = self.version(app_id, model_id, version_id)
            if version.status != "trained":
                raise ModelNotTrained(f"version {version_id!r} of model {model_id!r} is {version.status}, not trained")
            loaded = LoadedVersion.of(version)
            with self._cache_lock:
                self._loaded[(app_id, model_id, version_id)] = loaded
        return loaded

    def trained_version(self, app_id: str, model_id: str, version_id: str | None = None) -> ModelVersion:
        """The version predictions use (the latest trained one, or the named one), from the cache."""
        return self._loaded_latest(app_id, model_id, version_id).version

    def _allowed(self, app_id: str, rule: LabelRule) -> np.ndarray | None:
        """The inputs that may vote for the model (None: all of the app's); cached until labels change.
        An unlabeled input votes only where it is a negative (UnlabeledRule.NEGATIVES)."""
        if not rule.closed_environment and rule.unlabeled_negatives:
            return None
        labels = self._data.labels.get(app_id)
        with self._cache_lock:
            cached = self._allow.get((app_id, rule))
        if cached is not None and cached[0] == labels.version:
            return cached[1]
        entries = list(labels.entries.items())
        relevant = np.fromiter((s for s, e in entries if rule.relevant(e)), np.int64)
        allow = None if len(relevant) == len(entries) else relevant
        with self._cache_lock:
            self._allow[(app_id, rule)] = (labels.version, allow)
        return allow

    def suggestions(self, app_id: str, model_id: str, count: int = 12) -> list[Suggestion]:
        """Unlabeled inputs (no label for any of the model's concepts) to label next, best first, each
        with the model's current guess when it is trained (loupe.suggestions says how they are chosen)."""
        if not 1 <= count <= 200:
            raise InvalidArgument("count must be between 1 and 200")
        model = self.get(app_id, model_id)
        app = self._data.get_app(app_id)
        labels = self._data.labels.get(app_id)
        pool = unlabeled_seqs(labels, LabelRule(tuple(model.concept_ids), model.closed_environment), MAX_POOL)
        if not len(pool):
            return []
        labeled = _sample([s for s, e in list(labels.entries.items()) if e.positives & set(model.concept_ids)],
                          MAX_POOL)
        x = self._data.embeddings_of(app, pool)
        try:
            loaded = self._loaded_latest(app_id, model_id)
        except ModelNotTrained:
            loaded = None
        margins = None
        if loaded is not None and loaded.version.blend is not None:
            p = head_probabilities(loaded.head.logits(x), loaded.version.mutually_exclusive,
                                   loaded.version.blend.temperature)
            if loaded.version.mutually_exclusive and p.shape[1] > 1:
                top2 = np.sort(p, axis=1)[:, -2:]
                margins = top2[:, 1] - top2[:, 0]
            else:
                margins = np.abs(2 * p - 1).min(axis=1)
        picks = suggest(x, self._data.embeddings_of(app, labeled), count, margins)
        guesses = (self.predict_vectors(app_id, model_id, x[picks]) if loaded is not None
                   else [None] * len(picks))
        return [Suggestion(input_id=self._data.labels.get(app_id).entries[int(pool[i])].input_id,
                           concept_id=g.concepts[0].concept_id if g else None,
                           value=round(g.concepts[0].value, 4) if g else None)
                for i, g in zip(picks, guesses)]

    def predict_vectors(self, app_id: str, model_id: str, vectors: np.ndarray,
                        version_id: str | None = None) -> list[Prediction]:
        app = self._data.get_app(app_id)
        loaded = self._loaded_latest(app_id, model_id, version_id)
        if loaded.version.backbone != app.backbone:
            raise InvalidArgument(f"version {loaded.version.id} was trained on {loaded.version.backbone}, "
                                  f"the app uses {app.backbone}")
        index = self._data.index(app)
        labels = self._data.labels.get(app_id)
        return predict(loaded, np.asarray(vectors, np.float32).reshape(len(vectors), -1), labels, index,
                       self._allowed(app_id, loaded.rule))

    def inputs_predicted(self, app_id: str, concept_id: str, positive: bool, deadline: float) -> set[int] | None:
        """The app's inputs that its newest trained model with this concept predicts (score >= 0.5) or,
        with positive=False, does not. None when no trained model knows the concept. Every input is
        scored once per (version, labels) and cached; scoring stops with TooLong at `deadline`."""
        found = self._newest_trained_with(app_id, concept_id)
        if found is None:
            return None
        seqs, scores = self._all_scores(app_id, found, deadline)
        column = scores[:, found.concept_ids.index(concept_id)]
        return set(seqs[(column >= PREDICTED_THRESHOLD) == positive].tolist())

    def _newest_trained_with(self, app_id: str, concept_id: str) -> ModelVersion | None:
        for model in self.list_models(app_id, per_page=1000):
            try:
                version = self._loaded_latest(app_id, model.id).version
            except (ModelNotTrained, NotFound):
                continue
            if concept_id in version.concept_ids:
                return version
        return None

    def _all_scores(self, app_id: str, version: ModelVersion, deadline: float) -> tuple[np.ndarray, np.ndarray]:
        labels = self._data.labels.get(app_id)
        key = (app_id, version.model_id, version.id, labels.version)
        with self._cache_lock:
            cached = self._scored.get(key)
            if cached is not None:
                self._scored.move_to_end(key)
                return cached
        app = self._data.get_app(app_id)
        seqs = np.asarray(sorted(list(labels.entries)), np.int64)  # a snapshot: edits may go on
        scores = np.zeros((len(seqs), len(version.concept_ids)), np.float32)
        column = {concept_id: j for j, concept_id in enumerate(version.concept_ids)}
        for start in range(0, len(seqs), 1024):
            if time.monotonic() > deadline:
                raise TooLong("searching by predicted concepts took too long for this app's size; "
                              "narrow the search with annotated concepts or metadata")
            chunk = seqs[start:start + 1024]
            for row, p in enumerate(self.predict_vectors(app_id, version.model_id, self._data.embeddings_of(app, chunk),
                                                         version.id)):
                for c in p.concepts:
                    scores[start + row, column[c.concept_id]] = c.value
        with self._cache_lock:
            self._scored[key] = (seqs, scores)
            while len(self._scored) > SCORED_CACHE_ENTRIES:
                self._scored.popitem(last=False)
        return seqs, scores

    def predict_images(self, app_id: str, model_id: str, images: list[bytes],
                       version_id: str | None = None) -> list[Prediction]:
        return self.predict(app_id, model_id, images, version_id).predictions

    def predict(self, app_id: str, model_id: str, inputs: Sequence[str | bytes],
                version_id: str | None = None) -> ModelAnswer:
        """Predict stored inputs (given by id) and new images (given as bytes), in the order given,
        all with one version: the latest trained one, or the named one."""
        if not inputs:
            raise InvalidArgument("no inputs to predict")
        loaded = self._loaded_latest(app_id, model_id, version_id)  # fails before embedding if untrained
        vectors, _ = self._data.item_vectors(self._data.get_app(app_id), inputs)
        predictions = self.predict_vectors(app_id, model_id, vectors, loaded.version.id)
        return ModelAnswer(self.get(app_id, model_id), loaded.version, predictions)

    def predict_inputs(self, app_id: str, model_id: str, input_ids: list[str],
                       version_id: str | None = None) -> list[Prediction]:
        return self.predict(app_id, model_id, input_ids, version_id).predictions
