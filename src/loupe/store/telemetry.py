"""Per model and day: how many predictions it answered, how many were unsure or out of scope, and the
images most recently out of scope. Counted in memory and added here in batches (loupe.models.drift).
The reads and writes the transactions gain from this mixin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from loupe.store import keys as K
from loupe.store.records import DriftDay, OutOfScope

MAX_RECENT = 24  # out-of-scope images kept per model, newest last


class TelemetryReads:
    """Mixed into ReadTxn (which provides `_get` and `iter_prefix`)."""

    _get: Any
    iter_prefix: Any

    def drift_days(self, app_id: str, model_id: str) -> Iterator[DriftDay]:
        """Oldest day first."""
        for _, value in self.iter_prefix("counters", K.prefix(app_id, "drift", model_id)):
            yield msgspec.msgpack.decode(value, type=DriftDay)

    def recent_out_of_scope(self, app_id: str, model_id: str) -> list[OutOfScope]:
        raw = self._get("counters", K.join(app_id, "out-of-scope", model_id))
        return [] if raw is None else msgspec.msgpack.decode(raw, type=list[OutOfScope])


class TelemetryWrites(TelemetryReads):
    """Mixed into WriteTxn (which provides `_put` and `_delete`)."""

    _put: Any
    _delete: Any

    def add_drift(self, app_id: str, model_id: str, day: DriftDay) -> None:
        key = K.join(app_id, "drift", model_id, day.day)
        raw = self._get("counters", key)
        if raw is not None:
            day = msgspec.msgpack.decode(raw, type=DriftDay).plus(day)
        self._put("counters", key, msgspec.msgpack.encode(day))

    def add_out_of_scope(self, app_id: str, model_id: str, images: list[OutOfScope]) -> None:
        kept = [*self.recent_out_of_scope(app_id, model_id), *images][-MAX_RECENT:]
        self._put("counters", K.join(app_id, "out-of-scope", model_id), msgspec.msgpack.encode(kept))

    def delete_telemetry(self, app_id: str, model_id: str) -> None:
        for key in [k for k, _ in self.iter_prefix("counters", K.prefix(app_id, "drift", model_id))]:
            self._delete("counters", key)
        self._delete("counters", K.join(app_id, "out-of-scope", model_id))
