"""In-memory mirror of every input's labels, per app, so predictions read current labels in microseconds.

LMDB stays the source of truth: the mirror is loaded from it on first use and updated by the
application object right after each committed write, under the app's lock.
"""

from __future__ import annotations

import threading

import msgspec

from loupe.store import Store
from loupe.store.records import Input


class LabelEntry(msgspec.Struct, frozen=True):
    input_id: str
    positives: frozenset[str]
    negatives: frozenset[str]
    sha256: str = ""  # what the input's vector is stored under: trains read vectors with one lookup


class AppLabels:
    def __init__(self) -> None:
        self.entries: dict[int, LabelEntry] = {}
        self.version = 0  # bumped on every change; caches derived from the labels key on it

    def put(self, record: Input) -> None:
        self.entries[record.seq] = LabelEntry(record.id, frozenset(record.concepts), frozenset(record.not_concepts),
                                              record.sha256)
        self.version += 1

    def remove(self, seq: int) -> None:
        if self.entries.pop(seq, None) is not None:
            self.version += 1


class LabelMirror:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._apps: dict[str, AppLabels] = {}
        self._lock = threading.Lock()

    def get(self, app_id: str) -> AppLabels:
        with self._lock:
            labels = self._apps.get(app_id)
            if labels is None:
                labels = AppLabels()
                with self._store.read() as tx:
                    for record in tx.iter_inputs(app_id, newest_first=False):
                        labels.put(record)
                self._apps[app_id] = labels
            return labels

    def loaded(self, app_id: str) -> AppLabels | None:
        return self._apps.get(app_id)

    def put(self, app_id: str, records: list[Input]) -> None:
        """After a commit; an app not loaded yet will read the committed state when first used."""
        labels = self.loaded(app_id)
        if labels is not None:
            for record in records:
                labels.put(record)

    def remove(self, app_id: str, seqs: list[int]) -> None:
        labels = self.loaded(app_id)
        if labels is not None:
            for seq in seqs:
                labels.remove(seq)

    def forget(self, app_id: str) -> None:
        with self._lock:
            self._apps.pop(app_id, None)
