"""Drift in embedding space: per model and day, how many predictions were out of scope (or unsure), and
which recent images were unlike everything labeled.

The measure is the share of predicted images whose nearest labeled example is less similar than the
version's scope similarity, the 5th percentile of labeled examples' similarity to their nearest other
one. It needs no model of the distribution: while new images look like the labeled ones about 5% fall
below (by construction), so a share well above that says the images have moved away from what was
labeled (new products, a new camera, another season), before any accuracy can be measured. The daily
mean similarity to the nearest labeled example shows slower moves. Out-of-scope images are kept (the
last 24 per model) so "label next" can offer them.

Predictions are read-only and frequent: counts are kept in memory and added to LMDB at most every
FLUSH_SECONDS (and at close), so a kill -9 loses at most those seconds of counts, never a write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import msgspec

from loupe.errors import NotFound
from loupe.intake.embedding import Item, VideoClip
from loupe.intake.imaging import content_hash
from loupe.learning.prediction import Prediction, Verdict
from loupe.store import Store
from loupe.store.records import DriftDay, OutOfScope
from loupe.store.telemetry import MAX_RECENT

FLUSH_SECONDS = 10.0
MAX_DAYS = 90


class DriftReport(msgspec.Struct, frozen=True):
    model_id: str
    days: list[DriftDay]  # oldest first
    recent_out_of_scope: list[OutOfScope]  # newest last


def _today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


class Drift:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._days: dict[tuple[str, str, str], DriftDay] = {}  # (app, model, day) -> counts not yet stored
        self._recent: dict[tuple[str, str], list[OutOfScope]] = {}
        self._flushed = time.monotonic()

    def record(self, app_id: str, model_id: str, items: Sequence[Item],
               predictions: Sequence[Prediction | None]) -> None:
        """Count one request's predictions (one per image item; videos are not counted)."""
        day, now = _today(), time.time()
        key = (app_id, model_id, day)
        with self._lock:
            counts = self._days.get(key) or DriftDay(day=day)
            fresh: list[OutOfScope] = []
            n = out = unsure = near_n = 0
            near = 0.0
            for item, p in zip(items, predictions):
                if p is None or isinstance(item, VideoClip):
                    continue
                n += 1
                if p.nearest_example is not None:
                    near, near_n = near + p.nearest_example, near_n + 1
                if p.verdict is Verdict.OUT_OF_SCOPE:
                    out += 1
                    fresh.append(OutOfScope(input_id=item if isinstance(item, str) else "",
                                            sha256=content_hash(item) if isinstance(item, bytes) else "",
                                            nearest=p.nearest_example, at=now))
                elif p.verdict is Verdict.UNSURE:
                    unsure += 1
            self._days[key] = counts.plus(DriftDay(day=day, predictions=n, out_of_scope=out, unsure=unsure,
                                                   nearest_sum=near, nearest_count=near_n))
            if fresh:
                self._recent.setdefault((app_id, model_id), []).extend(fresh)
            due = time.monotonic() - self._flushed >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        """Add the counts kept in memory to LMDB (one unaudited transaction: counters, not app data)."""
        with self._lock:
            days, recent = self._days, self._recent
            self._days, self._recent = {}, {}
            self._flushed = time.monotonic()
        if not days and not recent:
            return
        with self._store.write(audited=False) as tx:
            for (app_id, model_id, _), counts in days.items():
                if tx.get_model(app_id, model_id) is not None:
                    tx.add_drift(app_id, model_id, counts)
            for (app_id, model_id), images in recent.items():
                if tx.get_model(app_id, model_id) is not None:
                    tx.add_out_of_scope(app_id, model_id, images)

    def report(self, app_id: str, model_id: str, days: int = 30) -> DriftReport:
        """The last `days` days (at most MAX_DAYS), stored counts plus those still in memory."""
        days = max(1, min(days, MAX_DAYS))
        with self._store.read() as tx:
            if tx.get_model(app_id, model_id) is None:
                raise NotFound("model", model_id)
            stored = {d.day: d for d in tx.drift_days(app_id, model_id)}
            recent = tx.recent_out_of_scope(app_id, model_id)
        with self._lock:
            pending = {k[2]: v for k, v in self._days.items() if k[:2] == (app_id, model_id)}
            recent = [*recent, *self._recent.get((app_id, model_id), [])][-MAX_RECENT:]
        merged = [stored.get(day, DriftDay(day=day)).plus(pending.get(day, DriftDay(day=day)))
                  for day in sorted(set(stored) | set(pending))]
        return DriftReport(model_id=model_id, days=merged[-days:], recent_out_of_scope=recent)
