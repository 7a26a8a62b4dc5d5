"""The composition root: builds every service of Loupe over one store and one set of loaded backbones.

Routes and commands call one method of one service (`loupe.inputs.add`, `loupe.trainer.train`, ...);
services reach down only (docs/architecture.md draws the layers). This object holds the only mutable
state shared across them: the caches inside the services it builds.
"""

from __future__ import annotations

import msgspec

from loupe.accounts.access import Access
from loupe.accounts.audit import AuditLog
from loupe.accounts.keys import ApiKeys
from loupe.accounts.members import Members
from loupe.accounts.sessions import LoginThrottle, Sessions
from loupe.accounts.users import Users
from loupe.apps.concepts import Concepts
from loupe.apps.context import AppContext
from loupe.apps.registry import Apps
from loupe.backbones.registry import DEFAULT_BACKBONE, BackboneCache
from loupe.config import Config
from loupe.intake.embedding import Embedder
from loupe.intake.image_pipeline import ImagePipeline
from loupe.intake.inputs import Inputs
from loupe.intake.url_fetch import UrlFetcher, UrlPolicy
from loupe.models.cache import ModelCache
from loupe.models.changes import Changes
from loupe.models.drift import Drift
from loupe.models.export import ModelExport
from loupe.models.feedback import Feedback
from loupe.models.predictions import Predictions
from loupe.models.predictor import CustomPredictor
from loupe.models.quality import Quality
from loupe.models.registry import ModelRegistry
from loupe.models.trainer import Trainer
from loupe.models.workflows import Workflows
from loupe.search.service import Search
from loupe.store import Store
from loupe.store.accounts import AuditRetention


class Readiness(msgspec.Struct):
    ready: bool
    reasons: list[str]
    backbones_loaded: list[str]
    training_jobs: int  # queued or running, all apps


class Loupe:
    def __init__(self, config: Config, backbones: BackboneCache | None = None) -> None:
        """`backbones` lets several application objects (tests, tools) share loaded models."""
        self.config = config
        self._closed = False
        limits = config.accounts
        self.store = Store(config.lmdb_path, config.lmdb_map_size,
                           AuditRetention(limits.audit_max_entries, limits.audit_max_age_days * 86400.0))
        self.backbones = backbones or BackboneCache(config)
        self.context = AppContext(config, self.store, self.backbones)
        self.keys = ApiKeys(self.store)
        self.users = Users(self.store)
        self.members = Members(self.store)
        self.access = Access(self.users, self.members, self.keys, Sessions(self.store, limits), LoginThrottle(limits))
        self.audit = AuditLog(self.store)
        self.apps = Apps(self.context)
        self.concepts = Concepts(self.context)
        self.embedder = Embedder(self.context, ImagePipeline(self.store, config.images, workers=config.decode_workers))
        self.inputs = Inputs(self.context, self.embedder)
        self.urls = UrlFetcher(UrlPolicy(timeout_seconds=config.url_timeout_seconds, max_bytes=config.images.max_bytes,
                                         allow_hosts=tuple(config.url_allow_hosts),
                                         max_concurrent=config.url_max_concurrent))
        cache = ModelCache()
        self.models = ModelRegistry(self.context, cache)
        self.predictor = CustomPredictor(self.context, cache, self.models)
        self.trainer = Trainer(self.context, self.models, self.predictor)
        self.exports = ModelExport(self.context, self.predictor)
        self.changes = Changes(self.context, self.models, self.predictor)
        self.quality = Quality(self.context, self.models, self.predictor, cache, self.trainer.jobs)
        self.drift = Drift(self.store)
        self.predictions = Predictions(self.context, self.embedder, self.models, self.predictor, self.concepts,
                                       self.drift)
        self.workflows = Workflows(self.context, self.models, self.predictions, self.embedder)
        self.feedback = Feedback(self.context, self.models)
        self.search = Search(self.context, self.embedder, self.inputs, self.predictor)

    def close(self) -> None:
        """Stop background work, save changed indexes (so the next start is fast), close LMDB. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.trainer.close()
        self.drift.flush()
        self.embedder.images.close()
        with self.store.read() as tx:
            apps = tx.list_apps()
        self.context.indexes.save_all(apps)
        self.store.close()

    def __enter__(self) -> Loupe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> Readiness:
        """Whether this process should get traffic: the store answers, the default backbone is loaded,
        and the training queue is not full."""
        with self.store.read():
            pass  # the store answers
        loaded = self.backbones.loaded_ids()
        reasons = []
        if DEFAULT_BACKBONE not in loaded:
            reasons.append(f"backbone {DEFAULT_BACKBONE} is not loaded yet")
        if self.trainer.queue.saturated:
            reasons.append("the training queue is full")
        return Readiness(ready=not reasons, reasons=reasons, backbones_loaded=loaded,
                         training_jobs=self.trainer.queue.pending())
