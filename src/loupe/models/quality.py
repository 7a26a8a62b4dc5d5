"""How good a model is and how to make it better: cross-validated evaluation, data-quality advice
(suspected mislabels, imbalance, confusable concepts), dismissals, and which inputs to label next."""

from __future__ import annotations

import functools
import time

import msgspec
import numpy as np

from loupe.apps.context import AppContext
from loupe.errors import Busy, InvalidArgument, ModelNotTrained
from loupe.learning.advice import Finding, FindingKind, advise
from loupe.learning.evaluation import evaluate
from loupe.learning.heads import head_probabilities
from loupe.learning.suggestions import MAX_POOL, suggest
from loupe.learning.training_set import LabelRule, TrainingSet, collect, rule_of, sample_seqs, unlabeled_seqs
from loupe.learning.values import Evaluation, EvaluationStatus
from loupe.models.cache import ModelCache
from loupe.models.predictor import CustomPredictor
from loupe.models.registry import ModelRegistry
from loupe.models.training_queue import FairQueue
from loupe.store.records import SYSTEM, Actor, ModelVersion, VersionStatus


class Suggestion(msgspec.Struct):
    input_id: str
    concept_id: str | None  # the model's current guess (None before its first train)
    value: float | None



class Quality:
    def __init__(self, context: AppContext, registry: ModelRegistry, predictor: CustomPredictor,
                 cache: ModelCache, queue: FairQueue) -> None:
        self._context = context
        self._store = context.store
        self._registry = registry
        self._predictor = predictor
        self._cache = cache
        self._queue = queue  # evaluations share the training queue (and its per-app bounds)

    def examples_of(self, app_id: str, version: ModelVersion) -> tuple[TrainingSet, np.ndarray]:
        app = self._context.sync(app_id)
        ts = collect(self._context.labels.get(app_id), rule_of(version.concept_ids, version.closed_environment,
                                                             version.unlabeled_rule))
        return ts, self._context.embeddings_of(app, ts.seqs)

    def evaluate(self, app_id: str, model_id: str, version_id: str, *, wait: bool = True,
                 by: Actor = SYSTEM) -> ModelVersion:
        """Cross-validate the version's recipe on the current labels of its concepts; store the result."""
        version = self._registry.version(app_id, model_id, version_id)
        if version.status is not VersionStatus.TRAINED or version.blend is None:
            raise ModelNotTrained(f"version {version_id!r} is {version.status}; only trained versions are evaluated")
        queued = msgspec.structs.replace(
            version, evaluation=Evaluation(status=EvaluationStatus.QUEUED, created_at=time.time()))
        self._registry.write_version(app_id, queued, by)
        try:
            future = self._queue.submit(app_id, functools.partial(self._run_evaluation, app_id, queued))
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

    def advice(self, app_id: str, model_id: str, version_id: str | None = None) -> list[Finding]:
        """Data-quality findings for the model's current labels (held-out predictions of the version's recipe)."""
        if version_id is None:
            version = self._predictor.loaded(app_id, model_id).version
        else:
            version = self._registry.version(app_id, model_id, version_id)
        ts, x = self.examples_of(app_id, version)
        held = None
        if version.blend is not None and len(ts.seqs):
            held = evaluate(x, ts, version.concept_ids, version.mutually_exclusive, version.blend)
        with self._store.read() as tx:
            dismissed = tx.dismissed(app_id, model_id)
        return [f for f in advise(x, ts, version.concept_ids, version.mutually_exclusive, held)
                if not (f.kind is FindingKind.SUSPECTED_MISLABEL and (f.input_ids[0], f.concept_ids[0]) in dismissed)]

    def dismiss(self, app_id: str, model_id: str, input_id: str, concept_id: str, *, by: Actor = SYSTEM) -> None:
        """A person checked a suspected mislabel and the label is right: it is not reported again (kept
        in LMDB, per model, until the model is deleted)."""
        self._registry.get(app_id, model_id)
        self._context.get_input(app_id, input_id)
        with self._store.write(by) as tx:
            tx.put_dismissal(app_id, model_id, input_id, concept_id)

    def suggestions(self, app_id: str, model_id: str, count: int = 12) -> list[Suggestion]:
        """Unlabeled inputs (no label for any of the model's concepts) to label next, best first, each
        with the model's current guess when it is trained (loupe.suggestions says how they are chosen)."""
        if not 1 <= count <= 200:
            raise InvalidArgument("count must be between 1 and 200")
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
        return [Suggestion(input_id=self._context.labels.get(app_id).entries[int(pool[i])].input_id,
                           concept_id=g.concepts[0].concept_id if g else None,
                           value=round(g.concepts[0].value, 4) if g else None)
                for i, g in zip(picks, guesses)]
