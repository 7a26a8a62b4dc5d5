"""One vector index per app: a cache of LMDB, rebuilt when its saved copy is missing or stale."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np

from loupe.errors import NotFound
from loupe.indexes import VectorIndex, build_index
from loupe.indexes.factory import IndexHeader, load_index, save_index
from loupe.store import Store
from loupe.store.records import App

log = logging.getLogger(__name__)


def seq_checksum(seqs: np.ndarray) -> str:
    """Order-free fingerprint of a set of input sequence numbers (they are never reused)."""
    x = np.asarray(seqs, dtype=np.uint64)
    # splitmix64 finaliser: spreads neighbouring seqs so the sum cannot cancel by accident.
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
        total = int(x.sum(dtype=np.uint64))
    return f"{len(seqs)}:{total:016x}"


class AppIndexes:
    def __init__(self, store: Store, directory: Path, approx_threshold: int) -> None:
        self._store = store
        self._dir = directory
        self._threshold = approx_threshold
        self._loaded: dict[str, VectorIndex] = {}
        self._dirty: set[str] = set()
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self.rebuilds = 0  # how many times an index was rebuilt from LMDB (tests and logs read it)

    def lock(self, app_id: str) -> threading.RLock:
        """Held around an app's LMDB write and the matching index update, so the two never diverge."""
        with self._locks_guard:
            return self._locks.setdefault(app_id, threading.RLock())

    def path(self, app_id: str) -> Path:
        # App ids may hold any printable character; the file name must not.
        return self._dir / f"{hashlib.sha256(app_id.encode()).hexdigest()[:32]}.faiss"

    def get(self, app: App, dim: int) -> VectorIndex:
        with self.lock(app.id):
            index = self._loaded.get(app.id)
            if index is None:
                index = self._load_or_rebuild(app, dim)
                self._loaded[app.id] = index
            return index

    def _load_or_rebuild(self, app: App, dim: int) -> VectorIndex:
        with self._store.read() as tx:
            checksum = seq_checksum(tx.input_seqs(app.id))
        saved = load_index(self.path(app.id))
        if saved is not None:
            header, index = saved
            if header.checksum == checksum and header.tag == app.backbone and header.dim == dim:
                return index
            log.info("index of app %s is stale (%s vs %s): rebuilding", app.id, header.checksum, checksum)
        return self.rebuild(app, dim)

    def catch_up(self, app: App, dim: int) -> None:
        """Another process changed the app: bring a loaded index level with LMDB by adding and removing
        the difference (cheap: sequence numbers are compared, only new vectors are read)."""
        with self.lock(app.id):
            index = self._loaded.get(app.id)
            if index is None:
                return
            with self._store.read() as tx:
                stored = tx.input_seqs(app.id)
            held = index.ids()
            gone = np.setdiff1d(held, stored, assume_unique=True)
            new = np.setdiff1d(stored, held, assume_unique=True)
            if len(gone):
                index.remove(gone)
            if len(new):
                index.add(new, self.vectors_of(app, new, dim))
            if len(gone) or len(new):
                self._dirty.add(app.id)
            if index.kind == "exact" and index.count() > self._threshold:
                self.rebuild(app, dim)

    def vectors_of(self, app: App, seqs: np.ndarray, dim: int) -> np.ndarray:
        """Stored vectors of the app's inputs with these sequence numbers, in that order."""
        out = np.empty((len(seqs), dim), np.float32)
        with self._store.read() as tx:
            for row, seq in enumerate(seqs.tolist()):
                input_id = tx.input_id_at(app.id, seq)
                record = tx.get_input(app.id, input_id) if input_id is not None else None
                vector = tx.get_embedding(app.backbone, record.sha256) if record is not None else None
                if vector is None or vector.shape[0] != dim:
                    raise NotFound("input", str(seq), f"input #{seq} of app {app.id!r} has no stored embedding")
                out[row] = vector
        return out

    def rebuild(self, app: App, dim: int) -> VectorIndex:
        with self.lock(app.id):
            ids, vectors = [], []
            with self._store.read() as tx:
                for record in tx.iter_inputs(app.id, newest_first=False):
                    vector = tx.get_embedding(app.backbone, record.sha256)
                    if vector is None or vector.shape[0] != dim:
                        log.warning("input %s of app %s has no %s embedding", record.id, app.id, app.backbone)
                        continue
                    ids.append(record.seq)
                    vectors.append(vector)
            matrix = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
            index = build_index(dim, np.asarray(ids, np.int64), matrix, self._threshold)
            self._loaded[app.id] = index
            self.rebuilds += 1
            self._save_locked(app)
            return index

    def add(self, app: App, dim: int, seqs: np.ndarray, vectors: np.ndarray) -> None:
        """Call after the LMDB commit, under `lock(app.id)`. An unloaded index is built later anyway."""
        index = self._loaded.get(app.id)
        if index is None:
            return
        index.add(seqs, vectors)
        self._dirty.add(app.id)
        if index.kind == "exact" and index.count() > self._threshold:
            self.rebuild(app, dim)  # grown past exact search: switch to the approximate index

    def remove(self, app: App, seqs: np.ndarray) -> None:
        index = self._loaded.get(app.id)
        if index is not None and len(seqs):
            index.remove(seqs)
            self._dirty.add(app.id)

    def save(self, app: App) -> None:
        with self.lock(app.id):
            if app.id in self._dirty:
                self._save_locked(app)

    def _save_locked(self, app: App) -> None:
        index = self._loaded[app.id]
        with self._store.read() as tx:
            checksum = seq_checksum(tx.input_seqs(app.id))
        if index.count() != int(checksum.split(":")[0]):
            # The in-memory index and LMDB disagree (should not happen); a file claiming
            # otherwise would hide that, so save nothing and let the next load rebuild.
            log.warning("index of app %s holds %d vectors, store %s: not saved", app.id, index.count(), checksum)
            return
        header = IndexHeader(kind=index.kind, dim=index.dim, count=index.count(), checksum=checksum, tag=app.backbone)
        try:
            save_index(self.path(app.id), index, header)
        except OSError as exc:  # e.g. disk full: the file is a cache, so serve on and save later
            log.warning("index of app %s not saved (%s); it stays in memory and is saved later", app.id, exc)
            return
        self._dirty.discard(app.id)

    def save_all(self, apps: list[App]) -> None:
        for app in apps:
            if app.id in self._dirty:
                self.save(app)

    def drop_cached(self, app_id: str) -> None:
        """Forget the in-memory index (another process changed the app); the next use reloads or rebuilds."""
        with self.lock(app_id):
            self._loaded.pop(app_id, None)
            self._dirty.discard(app_id)

    def forget(self, app_id: str) -> None:
        with self.lock(app_id):
            self._loaded.pop(app_id, None)
            self._dirty.discard(app_id)
            self.path(app_id).unlink(missing_ok=True)
