"""Training: a fair queue of trains per app, one train per model at a time across the processes sharing
a data dir (leases), crash recovery, and the debounced retrain after label edits."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import msgspec
import numpy as np

from loupe.apps.context import AppContext
from loupe.errors import Busy, ModelNotTrained, NotFound, TrainFailure, TrainingFailed
from loupe.learning.heads import Head
from loupe.learning.semi_supervised import MAX_UNLABELED
from loupe.learning.training import MAX_TRAIN_EXAMPLES, fit_version
from loupe.learning.training_set import LabelRule, UnlabeledRule, bounded, collect, unlabeled_seqs
from loupe.models.jobs import JobBoard
from loupe.models.leases import TrainLeases
from loupe.models.predictor import CustomPredictor
from loupe.models.registry import ModelRegistry
from loupe.models.retrainer import Retrainer
from loupe.models.training_queue import Deferred, FairQueue
from loupe.store.records import SYSTEM, Actor, Input, JobKind, ModelVersion, TrainLease, VersionStatus


class TrainTicket(msgspec.Struct):
    version: ModelVersion  # as queued
    done: Future  # resolves when the train has finished (its outcome is on the stored version)
    wait: bool  # small enough to answer the request only once trained


# Trains run on queue threads. Once another thread has run torch, its OpenMP team's idle spinning worker
# oversubscribes 2 cores: a 16-label x 10-concept train with 50k unlabeled inputs took 2.48 s with torch's
# 2 intra-op threads and 0.91 s with 1 (0.85 s on the main thread). Small trains (most of them: few-shot
# fits are many small L-BFGS runs) therefore run single-threaded; large ones keep every thread.
ONE_THREAD_MAX_EXAMPLES = 20_000
# A train whose model another process (or queue thread) is training is put back for this long: the queue
# thread runs other apps' jobs meanwhile instead of waiting on the lease.
LEASE_RETRY_SECONDS = 0.1


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

class Trainer:
    def __init__(self, context: AppContext, registry: ModelRegistry, predictor: CustomPredictor) -> None:
        self._context = context
        self._store = context.store
        self._registry = registry
        self._predictor = predictor
        self._torch_threads = TorchThreads()
        self._train_locks: dict[tuple[str, str], threading.Lock] = {}  # in this process
        self._locks_guard = threading.Lock()
        cfg = context.config
        # Every queued or running job has a record in LMDB: the per-app cap counts all processes' jobs,
        # and a dead process's jobs are failed by the others (loupe.models.jobs).
        self.queue = FairQueue(cfg.max_concurrent_trainings, cfg.training_queue_per_app, cfg.training_queue_total)
        self.jobs = JobBoard(self._store, self.queue, cfg.training_queue_per_app)
        self.jobs.on_orphaned(JobKind.TRAIN, registry.fail_orphaned)
        self.jobs.on_orphaned(JobKind.EVALUATE, registry.fail_orphaned)
        self._leases = TrainLeases(self._store, self.jobs.owner)  # one train per model across processes
        self.jobs.start_reaper()
        self.retrainer = Retrainer(cfg.retrain_delay_seconds, self._retrain) if cfg.auto_retrain else None
        context.events.labels_changed.append(self._labels_changed)

    def close(self) -> None:
        if self.retrainer is not None:
            self.retrainer.stop()
        self.queue.shutdown()
        self.jobs.close()  # what was still queued is failed now, not left counting against the app

    def train(self, app_id: str, model_id: str, *, wait: bool | None = None, by: Actor = SYSTEM) -> ModelVersion:
        """Snapshot the model and create a queued version. Small trains finish before this returns
        (wait=None decides by size); large ones run on the training queue. Returns the version."""
        ticket = self.submit_train(app_id, model_id, by=by)
        if ticket.wait if wait is None else wait:
            ticket.done.result()
            return self._registry.version(app_id, model_id, ticket.version.id)
        return ticket.version

    def submit_train(self, app_id: str, model_id: str, *, by: Actor = SYSTEM) -> TrainTicket:
        """Queue a train; the caller may wait on `done` (an async handler awaits it without a thread).
        Raises Busy when the app (or the queue) has as many jobs as it may."""
        app = self._context.sync(app_id)
        now = time.time()
        with self._store.write(by) as tx:
            model = tx.get_model(app_id, model_id)
            if model is None:
                raise NotFound("model", model_id)
            version = self._registry.new_version(model, model.next_version, VersionStatus.QUEUED, now)
            job = self.jobs.claim(tx, app_id, JobKind.TRAIN, model_id, version.id)  # Busy: nothing written
            tx.put_model(app_id, msgspec.structs.replace(model, next_version=model.next_version + 1))
            tx.put_version(app_id, version)
        try:
            done = self.jobs.run(app_id, job, functools.partial(self._run_training, app.id, version))
        except Busy:
            with self._store.write(by) as tx:
                tx.delete_version(app_id, model_id, version)  # refused: no version stays 'queued'
            raise
        rule = LabelRule(tuple(version.concept_ids), version.closed_environment)
        examples = sum(1 for e in list(self._context.labels.get(app_id).entries.values()) if rule.relevant(e))
        return TrainTicket(version, done, examples <= self._context.config.sync_train_max_examples)

    def _run_training(self, app_id: str, version: ModelVersion) -> None:
        """Train once the model is free: one train per model in this process (lock) and across processes
        (lease); else Deferred, and the queue thread takes other work meanwhile."""
        key = (app_id, version.model_id)
        with self._locks_guard:
            lock = self._train_locks.setdefault(key, threading.Lock())
        if not lock.acquire(blocking=False):
            raise Deferred(LEASE_RETRY_SECONDS)
        try:
            taken, replaced = self._leases.take(app_id, version.model_id, version.id)
            if not taken:
                raise Deferred(LEASE_RETRY_SECONDS)
            try:
                if replaced is not None:
                    self._fail_interrupted(app_id, version.model_id, replaced)
                self._train(app_id, version)
            finally:
                self._leases.give_back(app_id, version.model_id, version.id)
        finally:
            lock.release()

    def _train(self, app_id: str, version: ModelVersion) -> None:
        self._registry.set_status(app_id, version, status=VersionStatus.TRAINING)
        try:
            app = self._context.sync(app_id)
            backbone = self._context.backbone(app)  # BackboneUnavailable: the app cannot be served
            # Labeled inputs first; what the unlabeled ones become is chosen in the fit.
            rule = LabelRule(tuple(version.concept_ids), version.closed_environment)
            labels = self._context.labels.get(app_id)
            everything = collect(labels, rule)
            ts = bounded(everything, MAX_TRAIN_EXAMPLES)  # a million examples: a stratified sample
            x = self._context.embeddings_of(app, ts.seqs)
            warm = self._warm_start(app_id, version)
            background = not (version.closed_environment or version.mutually_exclusive)
            pseudo = self._context.config.semi_supervised
            # The unlabeled vectors are read only when something may use them (up to 50,000 of them).
            pool = unlabeled_seqs(labels, rule, MAX_UNLABELED) if background or pseudo else np.zeros(0, np.int64)
            model = self._registry.get(app_id, version.model_id)
            targets = [model.concept_precision.get(c, model.target_precision) for c in version.concept_ids]
            with self._torch_threads.one_for(len(ts.seqs) <= ONE_THREAD_MAX_EXAMPLES):
                fitted = fit_version(x, ts, version.concept_ids, version.mutually_exclusive, warm=warm,
                                     unlabeled=self._context.embeddings_of(app, pool) if len(pool) else None,
                                     background=background, pseudo_labels=pseudo, target_precision=targets)
        except TrainingFailed as exc:
            self._registry.set_status(app_id, version, status=VersionStatus.FAILED, failure=exc.failure,
                                      detail=exc.detail)
            for tell in self._context.events.trained:
                tell(VersionStatus.FAILED.value, 0.0)
            return
        except Exception as exc:  # noqa: BLE001 - a failed train must be visible, not lost in a thread
            self._registry.set_status(app_id, version, status=VersionStatus.FAILED, failure=TrainFailure.ERROR,
                                      detail=str(exc))
            raise
        background_rows = fitted.unlabeled_seen if fitted.self_training.rule is UnlabeledRule.NEGATIVES else 0
        done = msgspec.structs.replace(
            version, status=VersionStatus.TRAINED, detail="", backbone=app.backbone, dim=backbone.dim,
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
            self_training_strength=fitted.self_training.strength, thresholds=fitted.thresholds,
            scope_similarity=fitted.scope_similarity)
        self._registry.write_version(app_id, done)
        for tell in self._context.events.trained:
            tell(VersionStatus.TRAINED.value, fitted.seconds)
        with contextlib.suppress(NotFound):  # deleted while training
            self._registry.prune(app_id, version.model_id)  # the retention rule: no growth per retrain

    def _fail_interrupted(self, app_id: str, model_id: str, lease: TrainLease) -> None:
        """The process that held the model's lease died mid-train: its version must not stay 'training'."""
        with self._store.read() as tx:
            version = tx.get_version(app_id, model_id, lease.version_id)
        if version is not None and version.status in (VersionStatus.QUEUED, VersionStatus.TRAINING):
            self._registry.set_status(app_id, version, status=VersionStatus.FAILED, failure=TrainFailure.ERROR,
                             detail="interrupted: the server process training this version stopped; train again")

    def _warm_start(self, app_id: str, version: ModelVersion) -> Head | None:
        try:
            previous = self._predictor.loaded(app_id, version.model_id)
        except (ModelNotTrained, NotFound):
            return None
        same = (previous.version.concept_ids == version.concept_ids
                and previous.version.mutually_exclusive == version.mutually_exclusive)
        return previous.head if same else None


    def _labels_changed(self, app_id: str, records: list[Input]) -> None:
        """Schedule the debounced retrain of trained models whose examples these inputs are."""
        if self.retrainer is None:
            return
        touched = {c for r in records for c in (*r.concepts, *r.not_concepts)}
        with self._store.read() as tx:
            for model in list(tx.iter_models(app_id)):
                if not model.auto_retrain:
                    continue
                relevant = not model.closed_environment or touched & set(model.concept_ids)
                trained = any(v.status is VersionStatus.TRAINED for v in tx.iter_versions(app_id, model.id))
                if relevant and trained:
                    self.retrainer.touch(app_id, model.id)

    def _retrain(self, app_id: str, model_id: str) -> None:
        try:
            self.train(app_id, model_id, wait=True)
        except Busy:
            if self.retrainer is not None:
                self.retrainer.touch(app_id, model_id)  # the app's queue is full: try again later
