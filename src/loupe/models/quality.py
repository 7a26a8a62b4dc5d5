"""How good a model is and how to make it better: cross-validated evaluation, data-quality advice
(suspected mislabels, imbalance, confusable concepts), dismissals, and which inputs to label next.

Evaluations, advice and suggestions are seconds of CPU each: they run as jobs on the training queue
(fair across apps, capped per app across processes), never on a request thread. Advice and suggestions
are kept per (version, app generation) in this process, so asking again is a dictionary lookup; only
roles that may label start a computation (a viewer or a predict key reads what was computed).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import msgspec
import numpy as np

from loupe.apps.context import AppContext
from loupe.errors import Busy, Forbidden, InvalidArgument, ModelNotTrained, NotFound, QuotaExceeded
from loupe.ids import check_id
from loupe.learning.advice import Finding, FindingKind, advise
from loupe.learning.evaluation import evaluate
from loupe.learning.heads import head_probabilities
from loupe.learning.suggestions import MAX_POOL, suggest
from loupe.learning.training_set import (
    LabelRule,
    TrainingSet,
    bounded,
    collect,
    rule_of,
    sample_seqs,
    unlabeled_seqs,
)
from loupe.learning.values import Evaluation, EvaluationStatus
from loupe.models.cache import ModelCache
from loupe.models.jobs import JobBoard
from loupe.models.predictor import CustomPredictor
from loupe.models.registry import ModelRegistry
from loupe.store.records import SYSTEM, Actor, JobKind, ModelVersion, VersionStatus

# A dismissal marks one (input, concept) pair a person checked; more than a model's labeled inputs is junk.
MAX_DISMISSALS = 10_000
# Advice cross-validates the version's recipe, and the kNN evidence makes that quadratic in the labeled
# examples: 20,000 took 24 s + 2 s of checks, 10,000 9 s + 3 s, 5,000 3 s + 1 s (2 cores, 1280-d). Beyond
# this many, advice looks at a stratified sample (a rare concept keeps all its examples).
MAX_ADVICE_EXAMPLES = 8_000
RESULTS_KEPT = 32  # computed advice and suggestion answers kept, per process


class Suggestion(msgspec.Struct):
    input_id: str
    concept_id: str | None  # the model's current guess (None before its first train)
    value: float | None



class Quality:
    def __init__(self, context: AppContext, registry: ModelRegistry, predictor: CustomPredictor,
                 cache: ModelCache, jobs: JobBoard) -> None:
        self._context = context
        self._store = context.store
        self._registry = registry
        self._predictor = predictor
        self._cache = cache
        self._jobs = jobs  # the training queue's jobs: evaluations, advice and suggestions share its bounds
        self._lock = threading.Lock()
        self._results: OrderedDict[tuple, Any] = OrderedDict()  # computed, newest last
        self._running: dict[tuple, Future] = {}  # being computed: a second ask waits on the same job

    def examples_of(self, app_id: str, version: ModelVersion,
                    at_most: int | None = None) -> tuple[TrainingSet, np.ndarray]:
        app = self._context.sync(app_id)
        ts = collect(self._context.labels.get(app_id), rule_of(version.concept_ids, version.closed_environment,
                                                             version.unlabeled_rule))
        if at_most is not None:
            ts = bounded(ts, at_most)
        return ts, self._context.embeddings_of(app, ts.seqs)

    def evaluate(self, app_id: str, model_id: str, version_id: str, *, wait: bool = True,
                 by: Actor = SYSTEM) -> ModelVersion:
        """Cross-validate the version's recipe on the current labels of its concepts; store the result."""
        version = self._registry.version(app_id, model_id, version_id)
        if version.status is not VersionStatus.TRAINED or version.blend is None:
            raise ModelNotTrained(f"version {version_id!r} is {version.status}; only trained versions are evaluated")
        queued = msgspec.structs.replace(
            version, evaluation=Evaluation(status=EvaluationStatus.QUEUED, created_at=time.time()))
        with self._store.write(by) as tx:
            if not self._registry.same_incarnation(tx, app_id, version):
                raise NotFound("model", model_id)
            job = self._jobs.claim(tx, app_id, JobKind.EVALUATE, model_id, version_id)  # Busy: nothing written
            tx.put_version(app_id, queued)
        self._cache.forget(app_id, model_id)
        try:
            future = self._jobs.run(app_id, job, functools.partial(self._run_evaluation, app_id, queued))
        except Busy:
            self._update_evaluation(app_id, queued, version.evaluation)  # refused: back as it was
            raise
        if wait:
            future.result()
            return self._registry.version(app_id, model_id, version_id)
        return queued

    def _run_evaluation(self, app_id: str, version: ModelVersion) -> None:
        self._registry.write_version(app_id, msgspec.structs.replace(
            version, evaluation=Evaluation(status=EvaluationStatus.EVALUATING, created_at=time.time())))
        try:
            if version.blend is None:
                raise ModelNotTrained(f"version {version.id!r} has no blend parameters: train it first")
            ts, x = self.examples_of(app_id, version)
            result = evaluate(x, ts, version.concept_ids, version.mutually_exclusive, version.blend)
        except Exception as exc:  # noqa: BLE001 - recorded on the version, then re-raised for the log
            result = Evaluation(status=EvaluationStatus.FAILED, detail=str(exc), created_at=time.time())
            self._update_evaluation(app_id, version, result)
            raise
        self._update_evaluation(app_id, version, result)

    def _update_evaluation(self, app_id: str, version: ModelVersion, result: Evaluation | None) -> None:
        with self._store.write() as tx:
            current = tx.get_version(app_id, version.model_id, version.id)
            if current is not None and self._registry.same_incarnation(tx, app_id, version):
                tx.put_version(app_id, msgspec.structs.replace(current, evaluation=result))
        self._cache.forget(app_id, version.model_id)

    def advice(self, app_id: str, model_id: str, version_id: str | None = None, *,
               compute: bool = True) -> Future[list[Finding]]:
        """Data-quality findings for the model's current labels (held-out predictions of the version's
        recipe), without the dismissed ones: done at once when computed for this version and these
        labels, else a job on the training queue (only if `compute`; Forbidden otherwise)."""
        app = self._context.sync(app_id)
        if version_id is None:
            version = self._predictor.loaded(app_id, model_id).version
        else:
            version = self._registry.version(app_id, model_id, version_id)
        found = self._computed(app_id, (JobKind.ADVICE, app_id, model_id, version.id, app.generation), compute,
                               functools.partial(self._advise, app_id, version))
        return _then(found, functools.partial(self._undismissed, app_id, model_id))

    def _advise(self, app_id: str, version: ModelVersion) -> list[Finding]:
        ts, x = self.examples_of(app_id, version, MAX_ADVICE_EXAMPLES)
        held = None
        if version.blend is not None and len(ts.seqs):
            held = evaluate(x, ts, version.concept_ids, version.mutually_exclusive, version.blend)
        return advise(x, ts, version.concept_ids, version.mutually_exclusive, held)

    def _undismissed(self, app_id: str, model_id: str, findings: list[Finding]) -> list[Finding]:
        with self._store.read() as tx:
            dismissed = tx.dismissed(app_id, model_id)
        return [f for f in findings
                if not (f.kind is FindingKind.SUSPECTED_MISLABEL and (f.input_ids[0], f.concept_ids[0]) in dismissed)]

    def _computed(self, app_id: str, key: tuple, compute: bool, fn: Callable[[], Any]) -> Future:
        """The cached answer for `key`, the job computing it, or a new job (Busy beyond the app's cap)."""
        kind, _, model_id, version_id = key[:4]
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return _done(self._results[key])
            future = self._running.get(key)
            if future is None:
                if not compute:
                    raise Forbidden(f"{kind} for this model version and these labels is not computed yet; someone "
                                    "who may label (a labeler, admin or owner, or a key of label or all scope) "
                                    "starts it, then this key reads it")
                with self._store.write() as tx:
                    job = self._jobs.claim(tx, app_id, kind, model_id, version_id)
                future = self._jobs.run(app_id, job, fn)
                self._running[key] = future
        future.add_done_callback(functools.partial(self._settle, key))
        return future

    def _settle(self, key: tuple, future: Future) -> None:
        with self._lock:
            self._running.pop(key, None)
            if future.cancelled() or future.exception() is not None:
                return
            self._results[key] = future.result()
            while len(self._results) > RESULTS_KEPT:
                self._results.popitem(last=False)

    def dismiss(self, app_id: str, model_id: str, input_id: str, concept_id: str, *, by: Actor = SYSTEM) -> None:
        """A person checked a suspected mislabel and the label is right: it is not reported again (kept
        in LMDB, per model, until the model is deleted; at most MAX_DISMISSALS per model)."""
        model = self._registry.get(app_id, model_id)
        check_id("input", input_id)
        if check_id("concept", concept_id) not in model.concept_ids:
            raise InvalidArgument(f"concept {concept_id!r} is not one of model {model_id!r}'s concepts")
        self._context.get_input(app_id, input_id)
        with self._store.write(by) as tx:
            dismissed = tx.dismissed(app_id, model_id)
            if (input_id, concept_id) in dismissed:
                return
            if len(dismissed) >= MAX_DISMISSALS:
                raise QuotaExceeded(f"model {model_id!r} already holds {MAX_DISMISSALS} dismissed findings")
            tx.put_dismissal(app_id, model_id, input_id, concept_id)

    def suggestions(self, app_id: str, model_id: str, count: int = 12, *,
                    compute: bool = True) -> Future[list[Suggestion]]:
        """Unlabeled inputs (no label for any of the model's concepts) to label next, best first, each
        with the model's current guess when it is trained (loupe.suggestions says how they are chosen).
        Cached and queued as `advice` is."""
        if not 1 <= count <= 200:
            raise InvalidArgument("count must be between 1 and 200")
        model = self._registry.get(app_id, model_id)
        app = self._context.sync(app_id)
        try:
            loaded = self._predictor.loaded(app_id, model_id)
        except ModelNotTrained:
            loaded = None
        version_id = loaded.version.id if loaded is not None else ""
        key = (JobKind.SUGGESTIONS, app_id, model_id, version_id, app.generation, tuple(model.concept_ids), count)
        return self._computed(app_id, key, compute, functools.partial(self._suggest, app_id, model_id, count))

    def _suggest(self, app_id: str, model_id: str, count: int) -> list[Suggestion]:
        model = self._registry.get(app_id, model_id)
        app = self._context.sync(app_id)
        labels = self._context.labels.get(app_id)
        pool = unlabeled_seqs(labels, LabelRule(tuple(model.concept_ids), model.closed_environment), MAX_POOL)
        if not len(pool):
            return []
        labeled = sample_seqs([s for s, e in list(labels.entries.items()) if e.positives & set(model.concept_ids)],
                              MAX_POOL)
        x = self._context.embeddings_of(app, pool)
        try:
            loaded = self._predictor.loaded(app_id, model_id)
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
        picks = suggest(x, self._context.embeddings_of(app, labeled), count, margins)
        guesses = (self._predictor.predict_vectors(app, model_id, x[picks]) if loaded is not None
                   else [None] * len(picks))
        return [Suggestion(input_id=labels.entries[int(pool[i])].input_id,
                           concept_id=g.concepts[0].concept_id if g else None,
                           value=round(g.concepts[0].value, 4) if g else None)
                for i, g in zip(picks, guesses)]


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _then(future: Future, fn: Callable[[Any], Any]) -> Future:
    """A future of fn(future's result), computed when it is ready (on the thread that completes it)."""
    out: Future = Future()

    def chain(done: Future) -> None:
        try:
            out.set_result(fn(done.result()))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            out.set_exception(exc)

    future.add_done_callback(chain)
    return out
