"""What people and predictions say about a model, beside its versions: per day, how many predictions it
answered, how many were unsure or out of scope, the images most recently out of scope (counted in
memory, added here in batches: loupe.models.drift); and the suspected mislabels a person dismissed.
The reads and writes the transactions gain from these mixins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from loupe.store import keys as K
from loupe.store.records import DriftDay, OutOfScope, Resource

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


class DismissalReads:
    iter_prefix: Any

    def dismissed(self, app_id: str, model_id: str) -> set[tuple[str, str]]:
        """(input id, concept id) pairs a person said are labeled right, for this model's advice."""
        pairs = (key.split(K.SEP)[-2:] for key, _ in self.iter_prefix("dismissals", K.prefix(app_id, model_id)))
        return {(input_id.decode("utf-8"), concept_id.decode("utf-8")) for input_id, concept_id in pairs}


class DismissalWrites(DismissalReads):
    _put: Any
    _delete: Any
    _note_put: Any

    def put_dismissal(self, app_id: str, model_id: str, input_id: str, concept_id: str) -> None:
        self._note_put(app_id, Resource.DISMISSAL, f"{model_id}/{input_id}/{concept_id}", False)
        self._put("dismissals", K.join(app_id, model_id, input_id, concept_id), b"")

    def delete_dismissals(self, app_id: str, model_id: str | None = None) -> None:
        prefix = K.prefix(app_id, model_id) if model_id is not None else K.prefix(app_id)
        for key in [key for key, _ in self.iter_prefix("dismissals", prefix)]:
            self._delete("dismissals", key)
