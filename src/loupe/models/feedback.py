"""People's feedback on answers (Clarifai's feedback routes): kept, one record each, about this app's own
models only; bounded in size per record and in count per app."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from loupe.apps.context import AppContext
from loupe.errors import InvalidArgument, QuotaExceeded
from loupe.ids import new_id
from loupe.models.registry import ModelRegistry
from loupe.store.records import SYSTEM, Actor


class Feedback:
    def __init__(self, context: AppContext, registry: ModelRegistry) -> None:
        self._context = context
        self._registry = registry
        self._config = context.config

    def store(self, app_id: str, body: dict[str, Any], *, model_id: str | None = None,
              version_id: str | None = None, route: str = "", by: Actor = SYSTEM) -> None:
        self._context.sync(app_id)
        if model_id is not None:
            if version_id:
                self._registry.version(app_id, model_id, version_id)
            else:
                self._registry.get(app_id, model_id)
        record = msgspec.json.encode({"at": time.time(), "model_id": model_id, "version_id": version_id,
                                      "path": route, "body": body})
        if len(record) > self._config.max_feedback_bytes:
            raise InvalidArgument(f"feedback is {len(record)} bytes, limit is {self._config.max_feedback_bytes}")
        with self._context.store.write(by) as tx:
            if tx.feedback_count(app_id) >= self._config.max_feedback_per_app:
                raise QuotaExceeded(f"this app already holds {self._config.max_feedback_per_app} feedback records")
            tx.put_feedback(app_id, new_id(), record)
