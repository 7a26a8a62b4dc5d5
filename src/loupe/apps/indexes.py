"""One vector index per app: a cache of LMDB, rebuilt when its saved copy is missing or stale."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np

from loupe.errors import NotFound
from loupe.indexes import VectorIndex
from loupe.indexes.factory import (
    IndexHeader,
    empty_index,
    index_kind,
    load_index,
    save_index,
    training_size,
)
from loupe.indexes.reranked import Fetch, RerankedIndex
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


REBUILD_CHUNK = 50_000  # vectors read from LMDB and added at a time (256 MB at 1280 dims)


class AppIndexes:
    def __init__(self, store: Store, directory: Path, approx_threshold: int, compressed_threshold: int) -> None:
        self._store = store
        self._dir = directory
        self._threshold = approx_threshold
        self._compressed_threshold = compressed_threshold
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

    def loaded(self, app_id: str) -> VectorIndex | None:
        """The app's index if this process has it in memory (never loads or builds one)."""
        return self._loaded.get(app_id)

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
                return self._reranked(app, index)
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
            self._outgrown(app, index, dim)

    def vectors_by_hash(self, app: App, hashes: list[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of these contents (found ones only, in order) and which were found."""
        out = np.empty((len(hashes), dim), np.float32)
        with self._store.read() as tx:
            found = tx.embeddings_into(app.backbone, hashes, out)
        return (out if found.all() else out[found]), found

    def _vectors_at(self, app: App, seqs: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of the app's inputs with these sequence numbers [len(seqs), dim], and which were found
        (an input deleted meanwhile, or without a vector, is not; its row is zeros)."""
        out = np.zeros((len(seqs), dim), np.float32)
        with self._store.read() as tx:
            hashes = [tx.input_sha_at(app.id, seq) for seq in seqs.tolist()]
            found = tx.embeddings_into(app.backbone, hashes, out)
        return out, found

    def _fetch_for(self, app: App, dim: int) -> Fetch:
        """Originals of candidates, for exact re-ranking."""
        return lambda seqs: self._vectors_at(app, seqs, dim)

    def _reranked(self, app: App, index: VectorIndex) -> VectorIndex:
        """Compressed indexes answer with exact scores: their candidates are re-ranked from LMDB."""
        if index.kind == "ivfpq" and not isinstance(index, RerankedIndex):
            return RerankedIndex(index, self._fetch_for(app, index.dim))
        return index

    def vectors_of(self, app: App, seqs: np.ndarray, dim: int) -> np.ndarray:
        """Stored vectors of the app's inputs with these sequence numbers, in that order."""
        out, found = self._vectors_at(app, seqs, dim)
        if not found.all():
            seq = int(seqs[np.argmin(found)])
            raise NotFound("input", str(seq), f"input #{seq} of app {app.id!r} has no stored embedding")
        return out

    def rebuild(self, app: App, dim: int) -> VectorIndex:
        """From LMDB, streamed: a sample trains the index, then vectors are added a chunk at a time, so a
        million-input app never holds all its vectors in memory at once."""
        with self.lock(app.id):
            with self._store.read() as tx:
                rows = [(record.seq, record.sha256) for record in tx.iter_inputs(app.id, newest_first=False)]
            kind = index_kind(len(rows), self._threshold, self._compressed_threshold)
            sample = np.random.default_rng(len(rows)).permutation(len(rows))[:training_size(kind, len(rows))]
            training, _ = self.vectors_by_hash(app, [rows[i][1] for i in np.sort(sample)], dim)
            index: VectorIndex = empty_index(kind, dim, training, len(rows))
            for start in range(0, len(rows), REBUILD_CHUNK):
                chunk = rows[start:start + REBUILD_CHUNK]
                vectors, found = self.vectors_by_hash(app, [sha for _, sha in chunk], dim)
                seqs = np.asarray([seq for seq, _ in chunk], np.int64)
                for seq in seqs[~found].tolist():
                    log.warning("input #%d of app %s has no %s embedding", seq, app.id, app.backbone)
                index.add(seqs[found], vectors)
            index = self._reranked(app, index)
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
        self._outgrown(app, index, dim)

    def _outgrown(self, app: App, index: VectorIndex, dim: int) -> None:
        """Grown past its kind's range (exact -> IVF -> IVF-PQ): rebuild as the next kind. An IVF-PQ
        index keeps growing in place (its lists were trained for the app's size at the switch)."""
        if index_kind(index.count(), self._threshold, self._compressed_threshold) != index.kind:
            if index.kind != "ivfpq":
                self.rebuild(app, dim)

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
