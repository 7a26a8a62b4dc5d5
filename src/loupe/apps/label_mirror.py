"""In-memory mirror of every input's labels, per app, so predictions read current labels in microseconds.

LMDB stays the source of truth: the mirror is loaded from it on first use and updated by the
application object right after each committed write, under the app's lock.
"""

from __future__ import annotations

import threading

from loupe.learning.labeled import AppLabels, LabelEntry
from loupe.store import Store
from loupe.store.records import Input


def entry_of(record: Input) -> LabelEntry:
    return LabelEntry(record.id, frozenset(record.concepts), frozenset(record.not_concepts), record.sha256)


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
                        labels.put(record.seq, entry_of(record))
                self._apps[app_id] = labels
            return labels

    def loaded(self, app_id: str) -> AppLabels | None:
        return self._apps.get(app_id)

    def put(self, app_id: str, records: list[Input]) -> None:
        """After a commit; an app not loaded yet will read the committed state when first used."""
        labels = self.loaded(app_id)
        if labels is not None:
            for record in records:
                labels.put(record.seq, entry_of(record))

    def remove(self, app_id: str, seqs: list[int]) -> None:
        labels = self.loaded(app_id)
        if labels is not None:
            for seq in seqs:
                labels.remove(seq)

    def forget(self, app_id: str) -> None:
        with self._lock:
            self._apps.pop(app_id, None)
