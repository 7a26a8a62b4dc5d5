"""What predictions keep in memory of an app's models, under one lock: loaded versions, each model's
latest trained version, allow-lists of voting inputs and whole-app score tables. Registry, trainer
and predictor all drop entries here when what they derive from changes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import numpy as np

from loupe.learning.heads import Head
from loupe.learning.prediction import Scorer
from loupe.learning.training_set import LabelRule, rule_of
from loupe.store.records import ModelVersion

SCORED_CACHE_ENTRIES = 4  # (model version, labels) score tables kept; each is inputs x concepts floats
SUBSET_CACHE_ENTRIES = 8  # voting-input vector sets kept (each at most EXACT_SUBSET_MAX vectors)
T = TypeVar("T")


class LoadedVersion(msgspec.Struct, frozen=True):
    version: ModelVersion
    scorer: Scorer

    @property
    def head(self) -> Head:
        return self.scorer.head

    @property
    def rule(self) -> LabelRule:
        return self.scorer.rule

    @classmethod
    def of(cls, version: ModelVersion) -> LoadedVersion:
        assert version.blend is not None
        c = len(version.concept_ids)
        # Copied once: views of the record's bytes are read-only, which torch would copy on every predict.
        head = Head(np.frombuffer(version.weights, np.float32).reshape(c, version.dim).copy(),
                    np.frombuffer(version.bias, np.float32).copy(), version.mutually_exclusive)
        rule = rule_of(version.concept_ids, version.closed_environment, version.unlabeled_rule)
        return cls(version, Scorer(version.id, list(version.concept_ids), version.mutually_exclusive,
                                   version.blend, head, rule, list(version.thresholds), version.scope_similarity))


ScoreTable = tuple[np.ndarray, np.ndarray]  # (input seqs, scores [inputs, concepts])


class ModelCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str, str], LoadedVersion] = {}
        self._latest_trained: dict[tuple[str, str], str | None] = {}  # None: no trained version
        self._allow: dict[tuple[str, LabelRule], tuple[int, np.ndarray | None]] = {}
        self._scored: OrderedDict[tuple[str, str, str, int], ScoreTable] = OrderedDict()
        self._subsets: OrderedDict[tuple[str, LabelRule], tuple[int, Any]] = OrderedDict()

    def latest_trained(self, app_id: str, model_id: str, find: Callable[[], str | None]) -> str | None:
        key = (app_id, model_id)
        with self._lock:
            if key in self._latest_trained:
                return self._latest_trained[key]
        found = find()
        with self._lock:
            self._latest_trained[key] = found
        return found

    def loaded(self, app_id: str, model_id: str, version_id: str, load: Callable[[], LoadedVersion]) -> LoadedVersion:
        key = (app_id, model_id, version_id)
        with self._lock:
            cached = self._loaded.get(key)
        if cached is None:
            cached = load()
            with self._lock:
                self._loaded[key] = cached
        return cached

    def allow(self, app_id: str, rule: LabelRule, labels_version: int,
              derive: Callable[[], np.ndarray | None]) -> np.ndarray | None:
        with self._lock:
            cached = self._allow.get((app_id, rule))
        if cached is not None and cached[0] == labels_version:
            return cached[1]
        allow = derive()
        with self._lock:
            self._allow[(app_id, rule)] = (labels_version, allow)
        return allow

    def subset(self, app_id: str, rule: LabelRule, labels_version: int, build: Callable[[], T]) -> T:
        """The vectors of a rule's voting inputs, for exact search; rebuilt when labels change."""
        key = (app_id, rule)
        with self._lock:
            cached = self._subsets.get(key)
            if cached is not None and cached[0] == labels_version:
                self._subsets.move_to_end(key)
                return cached[1]
        built = build()
        with self._lock:
            self._subsets[key] = (labels_version, built)
            self._subsets.move_to_end(key)
            while len(self._subsets) > SUBSET_CACHE_ENTRIES:
                self._subsets.popitem(last=False)
        return built

    def scored(self, key: tuple[str, str, str, int], score: Callable[[], ScoreTable]) -> ScoreTable:
        with self._lock:
            cached = self._scored.get(key)
            if cached is not None:
                self._scored.move_to_end(key)
                return cached
        table = score()
        with self._lock:
            self._scored[key] = table
            while len(self._scored) > SCORED_CACHE_ENTRIES:
                self._scored.popitem(last=False)
        return table

    def forget_labels(self, app_id: str) -> None:
        """The app's labels were reloaded: allow-lists derived from them are void."""
        with self._lock:
            for key in [k for k in self._allow if k[0] == app_id]:
                del self._allow[key]
            for key in [k for k in self._subsets if k[0] == app_id]:
                del self._subsets[key]

    def forget_app(self, app_id: str) -> None:
        """Drop every cached version and 'latest trained' answer of the app's models."""
        with self._lock:
            for latest in [k for k in self._latest_trained if k[0] == app_id]:
                del self._latest_trained[latest]
            for loaded in [k for k in self._loaded if k[0] == app_id]:
                del self._loaded[loaded]
            for key in [k for k in self._subsets if k[0] == app_id]:
                del self._subsets[key]

    def forget(self, app_id: str, model_id: str) -> None:
        with self._lock:
            self._latest_trained.pop((app_id, model_id), None)
            for key in [k for k in self._loaded if k[:2] == (app_id, model_id)]:
                del self._loaded[key]
