"""Predictions of custom models over vectors: the version's head blended with the app's *current* labels
(its nearest labeled neighbours), so a label edit changes answers before any retrain."""

from __future__ import annotations

import time

import numpy as np

from loupe.apps.context import AppContext
from loupe.errors import InvalidArgument, ModelNotTrained, NotFound, TooLong
from loupe.indexes import VectorIndex
from loupe.indexes.subset import ExactSubset
from loupe.learning.prediction import Prediction, blended, decisions, neighbours, predict
from loupe.learning.training_set import LabelRule
from loupe.models.cache import LoadedVersion, ModelCache, ScoreTable
from loupe.models.registry import ModelRegistry
from loupe.store.records import App, ModelVersion, Serving, VersionStatus

EXACT_SUBSET_MAX = 20_000  # voting inputs searched exactly in memory (80 MB of 1280-d vectors at most)
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

    def _voters(self, app: App, loaded: LoadedVersion) -> tuple[VectorIndex | ExactSubset, np.ndarray | None]:
        """Where a version's neighbours are searched: the app's index (with the allow-list of inputs that
        may vote), or, for few voters, an exact search over their vectors in memory (a narrow allow-list
        made the IVF index probe every list: 0.5 ms per query)."""
        if loaded.version.backbone != app.backbone:
            raise InvalidArgument(f"version {loaded.version.id} was trained on {loaded.version.backbone}, "
                                  f"the app uses {app.backbone}")
        allow = self._allowed(app.id, loaded.rule)
        if allow is not None and 0 < len(allow) <= EXACT_SUBSET_MAX:
            voters = allow
            labels_version = self._context.labels.get(app.id).version
            return self._cache.subset(app.id, loaded.rule, labels_version,
                                      lambda: ExactSubset(voters, self._context.embeddings_of(app, voters))), None
        return self._context.index(app), allow

    def predict_vectors(self, app: App, model_id: str, vectors: np.ndarray,
                        version_id: str | None = None) -> list[Prediction]:
        loaded = self.loaded(app.id, model_id, version_id)
        index, allow = self._voters(app, loaded)
        return predict(loaded.scorer, np.asarray(vectors, np.float32).reshape(len(vectors), -1),
                       self._context.labels.get(app.id), index, allow)

    def compare_vectors(self, app: App, model_id: str, version_ids: tuple[str, str],
                        vectors: np.ndarray) -> list[tuple[np.ndarray, list[tuple[str, ...]]]]:
        """Two versions over the same rows: each one's confidences and decisions (loupe.learning
        .prediction.decisions). Versions with the same label rule share one neighbour search."""
        loaded = [self.loaded(app.id, model_id, v) for v in version_ids]
        labels = self._context.labels.get(app.id)
        x = np.asarray(vectors, np.float32).reshape(len(vectors), -1)
        out = []
        shared = None
        if loaded[0].rule == loaded[1].rule:
            index, allow = self._voters(app, loaded[0])
            shared = neighbours(loaded[0].scorer, x, labels, index, allow,
                                k=max(v.scorer.blend.k for v in loaded))
        for version in loaded:
            rows = shared
            if rows is None:
                index, allow = self._voters(app, version)
                rows = neighbours(version.scorer, x, labels, index, allow)
            scores = blended(version.scorer, x, rows)
            out.append((scores, decisions(version.scorer, scores)))
        return out

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
