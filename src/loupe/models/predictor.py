"""Predictions of custom models over vectors: the version's head blended with the app's *current* labels
(its nearest labeled neighbours), so a label edit changes answers before any retrain."""

from __future__ import annotations

import time

import numpy as np

from loupe.apps.context import AppContext
from loupe.errors import InvalidArgument, ModelNotTrained, NotFound, TooLong
from loupe.learning.prediction import Prediction, predict
from loupe.learning.training_set import LabelRule
from loupe.models.cache import LoadedVersion, ModelCache, ScoreTable
from loupe.models.registry import ModelRegistry
from loupe.store.records import App, ModelVersion, Serving, VersionStatus

PREDICTED_THRESHOLD = 0.5  # a predicted-concept search keeps inputs scored at least this
SCORE_CHUNK = 1024  # inputs scored at a time when a whole app is scored (the deadline is checked between)


class CustomPredictor:
    def __init__(self, context: AppContext, cache: ModelCache, registry: ModelRegistry) -> None:
        self._context = context
        self._registry = registry
        self._store = context.store
        self._cache = cache
        context.events.labels_reloaded.append(cache.forget_labels)
        context.events.models_changed.append(cache.forget_app)
        context.events.app_deleted.append(cache.forget_app)

    def loaded(self, app_id: str, model_id: str, version_id: str | None = None) -> LoadedVersion:
        """The named version, or the one the model serves (its published one, or the latest trained
        one), ready to score (ModelNotTrained if none)."""
        if version_id is None:
            version_id = self._cache.latest_trained(app_id, model_id, lambda: self._find_serving(app_id, model_id))
            if version_id is None:
                model = self._registry.get(app_id, model_id)
                if model.serving is Serving.PUBLISHED:
                    raise ModelNotTrained(f"model {model_id!r} serves its published version and none is "
                                          "published yet: publish a trained version (or name a version)")
                raise ModelNotTrained(f"model {model_id!r} has no trained version yet: train it first")
        return self._cache.loaded(app_id, model_id, version_id, lambda: self._load(app_id, model_id, version_id))

    def _find_serving(self, app_id: str, model_id: str) -> str | None:
        """The version a prediction naming none gets: the published one, or the newest trained one."""
        with self._store.read() as tx:
            model = tx.get_model(app_id, model_id)
            if model is None:
                raise NotFound("model", model_id)
            if model.serving is Serving.PUBLISHED:
                return model.published or None
            found = next((v for v in tx.iter_versions(app_id, model_id) if v.status is VersionStatus.TRAINED), None)
        return found.id if found else None

    def _load(self, app_id: str, model_id: str, version_id: str) -> LoadedVersion:
        with self._store.read() as tx:
            if tx.get_model(app_id, model_id) is None:
                raise NotFound("model", model_id)
            version = tx.get_version(app_id, model_id, version_id)
        if version is None:
            raise NotFound("version", version_id, f"model {model_id!r} has no version {version_id!r}")
        if version.status is not VersionStatus.TRAINED:
            raise ModelNotTrained(f"version {version_id!r} of model {model_id!r} is {version.status}, not trained")
        return LoadedVersion.of(version)

    def trained_version(self, app_id: str, model_id: str, version_id: str | None = None) -> ModelVersion:
        """The version predictions use (the latest trained one, or the named one), from the cache."""
        self._context.sync(app_id)
        return self.loaded(app_id, model_id, version_id).version

    def _allowed(self, app_id: str, rule: LabelRule) -> np.ndarray | None:
        """The inputs that may vote for the model (None: all of the app's); cached until labels change.
        An unlabeled input votes only where it is a negative (UnlabeledRule.NEGATIVES)."""
        if not rule.closed_environment and rule.unlabeled_negatives:
            return None
        labels = self._context.labels.get(app_id)

        def derive() -> np.ndarray | None:
            entries = list(labels.entries.items())
            relevant = np.fromiter((s for s, e in entries if rule.relevant(e)), np.int64)
            return None if len(relevant) == len(entries) else relevant

        return self._cache.allow(app_id, rule, labels.version, derive)

    def predict_vectors(self, app: App, model_id: str, vectors: np.ndarray,
                        version_id: str | None = None) -> list[Prediction]:
        loaded = self.loaded(app.id, model_id, version_id)
        if loaded.version.backbone != app.backbone:
            raise InvalidArgument(f"version {loaded.version.id} was trained on {loaded.version.backbone}, "
                                  f"the app uses {app.backbone}")
        index = self._context.index(app)
        labels = self._context.labels.get(app.id)
        return predict(loaded.scorer, np.asarray(vectors, np.float32).reshape(len(vectors), -1), labels, index,
                       self._allowed(app.id, loaded.rule))

    def inputs_predicted(self, app: App, concept_id: str, positive: bool, deadline: float) -> set[int] | None:
        """The app's inputs that its newest trained model with this concept predicts (score >= 0.5) or,
        with positive=False, does not. None when no trained model knows the concept. Every input is
        scored once per (version, labels) and cached; scoring stops with TooLong at `deadline`."""
        found = self._newest_trained_with(app.id, concept_id)
        if found is None:
            return None
        labels = self._context.labels.get(app.id)
        key = (app.id, found.model_id, found.id, labels.version)
        seqs, scores = self._cache.scored(key, lambda: self._all_scores(app, found, deadline))
        column = scores[:, found.concept_ids.index(concept_id)]
        return set(seqs[(column >= PREDICTED_THRESHOLD) == positive].tolist())

    def _newest_trained_with(self, app_id: str, concept_id: str) -> ModelVersion | None:
        for model in self._registry.ordered(app_id):
            try:
                version = self.loaded(app_id, model.id).version
            except (ModelNotTrained, NotFound):
                continue
            if concept_id in version.concept_ids:
                return version
        return None

    def _all_scores(self, app: App, version: ModelVersion, deadline: float) -> ScoreTable:
        labels = self._context.labels.get(app.id)
        seqs = np.asarray(sorted(list(labels.entries)), np.int64)  # a snapshot: edits may go on
        scores = np.zeros((len(seqs), len(version.concept_ids)), np.float32)
        column = {concept_id: j for j, concept_id in enumerate(version.concept_ids)}
        for start in range(0, len(seqs), SCORE_CHUNK):
            if time.monotonic() > deadline:
                raise TooLong("searching by predicted concepts took too long for this app's size; "
                              "narrow the search with annotated concepts or metadata")
            chunk = seqs[start:start + SCORE_CHUNK]
            vectors = self._context.embeddings_of(app, chunk)
            for row, p in enumerate(self.predict_vectors(app, version.model_id, vectors, version.id)):
                for c in p.concepts:
                    scores[start + row, column[c.concept_id]] = c.value
        return seqs, scores
