"""The data of an app as every service above sees it: its record, backbone, vector index and label mirror,
kept level with LMDB, and the one way inputs are written.

LMDB is the source of truth; the index and the label mirror are caches of it in this process. Other
processes (a `loupe import` beside `loupe serve`, other server workers) write to the same data dir, so
each service brings an app's caches level with LMDB as an explicit first step (`sync`), and every input
write goes through `writing`: app lock, one transaction, then the caches follow the commit.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import msgspec
import numpy as np

from loupe.apps.indexes import AppIndexes
from loupe.apps.label_mirror import LabelMirror
from loupe.backbones.base import Backbone
from loupe.backbones.registry import BackboneCache
from loupe.config import Config
from loupe.errors import NotFound
from loupe.indexes import VectorIndex
from loupe.store import Store, WriteTxn
from loupe.store.records import SYSTEM, Actor, App, Concept, Input


class AppEvents:
    """Who to tell when an app's caches change: the model caches above subscribe at composition, so the
    apps layer never imports them."""

    def __init__(self) -> None:
        self.labels_reloaded: list[Callable[[str], None]] = []  # the app's label mirror was dropped
        self.models_changed: list[Callable[[str], None]] = []  # models changed in LMDB (any process)
        self.labels_changed: list[Callable[[str, list[Input]], None]] = []  # these inputs' labels changed
        self.app_deleted: list[Callable[[str], None]] = []
        # Work done, for whoever counts it (the service's metrics): (backbone, embedder, images, seconds)
        # of each batch a backbone embedded, and (status, seconds) of each finished train.
        self.embedded: list[Callable[[str, str, int, float], None]] = []
        self.trained: list[Callable[[str, float], None]] = []


class InputWrite:
    """What one input write does, recorded while its transaction runs; the caches apply it after the commit."""

    def __init__(self, tx: WriteTxn, app: App) -> None:
        self.tx = tx
        self.app = app  # as read under the app's lock (fresh next_seq); a writer may replace it
        self.put: list[Input] = []  # inputs written (new or edited)
        self.edited: list[Input] = []  # beside new ones in `put` (whose vectors follow): existing ones edited
        self.removed: list[Input] = []  # inputs deleted
        self.touched: list[Input] = []  # records whose labels matter to models (before and after an edit)
        self.vectors: np.ndarray | None = None  # the new inputs' unit vectors, in `put` order


class AppContext:
    def __init__(self, config: Config, store: Store, backbones: BackboneCache) -> None:
        self.config = config
        self.store = store
        self.backbones = backbones
        self.indexes = AppIndexes(store, config.index_dir, config.approx_index_threshold,
                                  config.compressed_index_threshold)
        self.labels = LabelMirror(store)
        self.events = AppEvents()
        self._generations: dict[str, int] = {}  # per app: the generation our caches reflect
        self._model_generations: dict[str, int] = {}  # per app: the model generation our model caches reflect
        self._sync_lock = threading.Lock()

    def get(self, app_id: str) -> App:
        """The app's record as stored (NotFound if there is none); touches no cache."""
        with self.store.read() as tx:
            app = tx.get_app(app_id)
        if app is None:
            raise NotFound("app", app_id)
        return app

    def sync(self, app_id: str) -> App:
        """Bring this process's caches of the app level with LMDB (other processes may have written) and
        return its record: the first step of every service call about an app."""
        app = self.get(app_id)
        if self._generations.setdefault(app.id, app.generation) != app.generation:
            self._resync(app.id, app.generation)
        with self._sync_lock:
            models_moved = self._model_generations.setdefault(app.id, app.model_generation) != app.model_generation
            self._model_generations[app.id] = app.model_generation
        if models_moved:
            for forget in self.events.models_changed:
                forget(app.id)
        return app

    def _resync(self, app_id: str, generation: int) -> None:
        """Another process wrote to the app: the index catches up with LMDB, the label mirror reloads on use."""
        with self.indexes.lock(app_id):
            if self._generations.get(app_id) == generation:
                return
            with self.store.read() as tx:
                app = tx.get_app(app_id)
            if app is not None:
                self.indexes.catch_up(app, self.backbone(app).dim)
            self.labels.forget(app_id)
            for forget in self.events.labels_reloaded:
                forget(app_id)
            self._generations[app_id] = generation

    def _wrote(self, app_id: str, previous: int, new: int) -> bool:
        """After our own commit (under the app's lock): caches stay valid unless someone else wrote
        between our last sync and this write. False: they were brought level with LMDB, this write included."""
        if self._generations.get(app_id, previous) == previous:
            self._generations[app_id] = new
            return True
        self._resync(app_id, new)
        return False

    def tell_embedded(self, backbone_id: str, embedder: str, images: int, seconds: float) -> None:
        if images:
            for tell in self.events.embedded:
                tell(backbone_id, embedder, images, seconds)

    @contextlib.contextmanager
    def writing(self, app_id: str, by: Actor = SYSTEM) -> Iterator[InputWrite]:
        """Write inputs of an app: under its lock, in one transaction that also moves its generation on;
        after the commit the index and label mirror follow, then models hear which labels changed.
        An exception inside aborts the transaction and leaves every cache as it was. The write is
        audited as done `by` that actor, in the same transaction."""
        with self.indexes.lock(app_id):
            with self.store.write(by) as tx:
                app = tx.get_app(app_id)
                if app is None:
                    raise NotFound("app", app_id)
                write = InputWrite(tx, app)
                yield write
                previous = app.generation
                app = msgspec.structs.replace(write.app, generation=previous + 1)
                tx.put_app(app)
            # Committed. Now the caches follow (an index not loaded yet is built from LMDB when needed).
            if self._wrote(app_id, previous, app.generation):
                dim = self.backbone(app).dim
                if write.vectors is not None and write.put:
                    self.indexes.add(app, dim, np.asarray([r.seq for r in write.put], np.int64), write.vectors)
                if write.removed:
                    seqs = [r.seq for r in write.removed]
                    self.indexes.remove(app, np.asarray(seqs, np.int64))
                    self.labels.remove(app_id, seqs)
                self.labels.put(app_id, write.put + write.edited)
        if write.touched:
            for tell in self.events.labels_changed:
                tell(app_id, write.touched)

    @staticmethod
    def ensure_concepts(tx: WriteTxn, app_id: str, concept_ids: list[str], now: float | None = None) -> None:
        """Concepts named on an input or a model are created on the fly, with the id as their name."""
        for concept_id in concept_ids:
            if tx.get_concept(app_id, concept_id) is None:
                tx.put_concept(app_id, Concept(id=concept_id, name=concept_id, created_at=now or time.time()))

    def get_input(self, app_id: str, input_id: str) -> Input:
        with self.store.read() as tx:
            record = tx.get_input(app_id, input_id)
        if record is None:
            raise NotFound("input", input_id)
        return record

    def image_of(self, app_id: str, input_id: str) -> bytes:
        """The stored image of an input (NotFound if the input, or its image, is not there)."""
        record = self.get_input(app_id, input_id)
        with self.store.read() as tx:
            data = tx.get_blob(record.sha256)
        if data is None:
            raise NotFound("input", input_id, f"input {input_id!r} has no stored image")
        return data

    def backbone(self, app: App) -> Backbone:
        return self.backbones.get(app.backbone)

    def index(self, app: App) -> VectorIndex:
        return self.indexes.get(app, self.backbone(app).dim)

    def embeddings_of(self, app: App, seqs: np.ndarray) -> np.ndarray:
        """Stored vectors of the app's inputs with these sequence numbers, in that order."""
        dim = self.backbone(app).dim
        labels = self.labels.loaded(app.id)
        entries = [labels.entries.get(seq) for seq in seqs.tolist()] if labels is not None else []
        if labels is not None and all(e is not None and e.sha256 for e in entries):
            # The label mirror knows each input's content hash: one LMDB lookup per vector, not three.
            vectors, found = self.indexes.vectors_by_hash(app, [e.sha256 for e in entries if e is not None], dim)
            if found.all():
                return vectors
        return self.indexes.vectors_of(app, seqs, dim)

    def forget(self, app_id: str) -> None:
        """The app was deleted: drop its caches and tell the layers above."""
        self.indexes.forget(app_id)
        self.labels.forget(app_id)
        self._generations.pop(app_id, None)
        with self._sync_lock:
            self._model_generations.pop(app_id, None)
        for forget in self.events.app_deleted:
            forget(app_id)
