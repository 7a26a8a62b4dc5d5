"""The application object: owns the store, the loaded backbones and the per-app indexes.

Every public method is one unit of work: validation first, slow work (decoding, embedding) outside
locks, then one LMDB write transaction, then the in-memory index update under the app's lock.
"""

from __future__ import annotations

import fnmatch
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from loupe.api_keys import ApiKeys
from loupe.app_indexes import AppIndexes
from loupe.backbones.base import Backbone, l2_normalise
from loupe.backbones.registry import BACKBONE_IDS, DEFAULT_BACKBONE, BackboneCache
from loupe.config import Config
from loupe.custom_models import CustomModels
from loupe.errors import (
    Busy,
    Conflict,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
)
from loupe.general_model import (
    GENERAL_EMBED_MODEL_ID,
    GENERAL_MODEL_ID,
    ModelKind,
    builtin_kind,
    general_records,
    imagenet_predictions,
)
from loupe.ids import check_id, check_name, new_id
from loupe.image_pipeline import Embedded, ImagePipeline, Prepared
from loupe.imaging import DecodedImage, content_hash, crop_fraction, decode_image
from loupe.indexes import VectorIndex
from loupe.label_mirror import LabelMirror
from loupe.labels import EditAction, InputEdit, apply_edit, check_labels, check_metadata, check_regions
from loupe.pagination import page_window
from loupe.prediction import Prediction
from loupe.recent_images import RecentImages
from loupe.retrainer import Retrainer
from loupe.search import (
    MAX_PREDICTED_CONCEPTS,
    SearchFilter,
    SearchHit,
    SearchQuery,
    allowed_seqs,
    filtered_inputs,
    hits_for,
)
from loupe.store import Store, WriteTxn
from loupe.store.records import App, Concept, GeoPoint, Input, Model, ModelVersion, Region
from loupe.thumbnails import thumbnail
from loupe.url_fetch import UrlFetcher, UrlPolicy
from loupe.video import FrameTime, sample_frames


class NewInput(msgspec.Struct, kw_only=True):
    image: bytes
    id: str | None = None
    source: str = ""
    metadata: dict[str, Any] = {}
    concepts: list[str] = []
    not_concepts: list[str] = []
    geo: GeoPoint | None = None
    regions: list[Region] = []
    crop: list[float] = []


class VideoClip(msgspec.Struct):
    """A video to predict: one answer per sampled frame (one every sample_ms; 0 = Clarifai's 1 s)."""

    data: bytes
    sample_ms: int = 0


class FrameAnswer(msgspec.Struct):
    index: int
    time_ms: int
    prediction: Prediction | None  # None for the embedding model
    embedding: Any  # the frame's unit vector (np.ndarray)


class InputAnswer(msgspec.Struct):
    prediction: Prediction | None = None  # an image (None for the embedding model, and for videos)
    embedding: Any = None  # an image's unit vector (np.ndarray)
    frames: list[FrameAnswer] = []  # a video's sampled frames


class ModelView(msgspec.Struct):
    """A model as the API shows it: custom or built-in (Clarifai lists built-ins as public, app "main")."""

    model: Model
    version: ModelVersion | None
    concepts: list[Concept]
    kind: ModelKind = ModelKind.CONCEPT
    public: bool = False


class PredictAnswer(msgspec.Struct):
    view: ModelView  # the model, with the version that answered
    answers: list[InputAnswer]  # one per input, in order

    @property
    def model(self) -> Model:
        return self.view.model

    @property
    def version(self) -> ModelVersion:
        assert self.view.version is not None
        return self.view.version

    @property
    def predictions(self) -> list[Prediction | None]:
        return [a.prediction for a in self.answers]


class EmbeddedRows(msgspec.Struct):
    vectors: Any  # np.ndarray [rows, dim], unit vectors
    norms: Any  # np.ndarray [rows], feature norms (NaN where unknown)
    spans: list[tuple[int, int]]  # each input's rows
    frames: list[list[FrameTime]]  # each input's sampled frames (empty for images)
    still: list[str | bytes]  # the images and stored inputs, rows 0..len(still)-1


class PreparedInputs(msgspec.Struct):
    app: App
    items: list[NewInput]
    ids: list[str]
    images: Prepared


class AddedInputs(msgspec.Struct):
    inputs: list[Input]
    embedded: int  # how many images had to go through the backbone (the rest were cached)


class Readiness(msgspec.Struct):
    ready: bool
    reasons: list[str]
    backbones_loaded: list[str]
    training_jobs: int  # queued or running, all apps


class AppSummary(msgspec.Struct):
    app: App
    input_count: int
    concept_count: int


class Loupe:
    def __init__(self, config: Config, backbones: BackboneCache | None = None) -> None:
        """`backbones` lets several application objects (tests, tools) share loaded models."""
        self.config = config
        self._closed = False
        self.store = Store(config.lmdb_path, config.lmdb_map_size)
        self.backbones = backbones or BackboneCache(config)
        self.indexes = AppIndexes(self.store, config.index_dir, config.approx_index_threshold,
                                   config.compressed_index_threshold)
        self.labels = LabelMirror(self.store)
        self._generations: dict[str, int] = {}  # per app: the generation our caches reflect
        self._model_generations: dict[str, int] = {}  # per app: the model generation our model caches reflect
        self.keys = ApiKeys(self.store)
        # Decoding and embedding new images hold large buffers (a 40 MP photo is 120 MB of pixels) and
        # all the cores: at most this many run at once, the rest wait, so memory and latency stay bounded.
        self.embed_gate = threading.BoundedSemaphore(config.embed_concurrency)
        self.images = ImagePipeline(self.store, config.images, workers=config.decode_workers)
        self.urls = UrlFetcher(UrlPolicy(timeout_seconds=config.url_timeout_seconds, max_bytes=config.images.max_bytes,
                                         allow_hosts=tuple(config.url_allow_hosts),
                                         max_concurrent=config.url_max_concurrent))
        self.models = CustomModels(self)
        self.recent_images = RecentImages()
        self.retrainer = Retrainer(config.retrain_delay_seconds, self._retrain) if config.auto_retrain else None

    def close(self) -> None:
        """Stop background work, save changed indexes (so the next start is fast), close LMDB. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.retrainer is not None:
            self.retrainer.stop()
        self.models.close()
        self.images.close()
        with self.store.read() as tx:
            apps = tx.list_apps()
        self.indexes.save_all(apps)
        self.store.close()

    def __enter__(self) -> Loupe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- apps
    def create_app(self, app_id: str, backbone: str | None = None) -> App:
        check_id("app", app_id)
        backbone = backbone or DEFAULT_BACKBONE
        if backbone not in BACKBONE_IDS:
            raise InvalidArgument(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONE_IDS)}")
        self.backbones.get(backbone)  # refuse an app whose backbone cannot be loaded here
        with self.store.write() as tx:
            if tx.get_app(app_id) is not None:
                raise Conflict(f"app {app_id!r} already exists")
            app = App(id=app_id, backbone=backbone, created_at=time.time())
            tx.put_app(app)
        return app

    def get_app(self, app_id: str) -> App:
        with self.store.read() as tx:
            app = tx.get_app(app_id)
        if app is None:
            raise NotFound("app", app_id)
        if self._generations.setdefault(app.id, app.generation) != app.generation:
            self._resync(app.id, app.generation)
        if self._model_generations.setdefault(app.id, app.model_generation) != app.model_generation:
            self._model_generations[app.id] = app.model_generation
            self.models.forget_app(app.id)  # models changed (here or in another process): reload them
        return app

    def _resync(self, app_id: str, generation: int) -> None:
        """Another process wrote to the app: the index catches up with LMDB, the label mirrors reload on use."""
        with self.indexes.lock(app_id):
            if self._generations.get(app_id) == generation:
                return
            with self.store.read() as tx:
                app = tx.get_app(app_id)
            if app is not None:
                self.indexes.catch_up(app, self.backbone(app).dim)
            self.labels.forget(app_id)
            self.models.forget_labels(app_id)
            self._generations[app_id] = generation

    def _wrote(self, app_id: str, previous: int, new: int) -> bool:
        """After our own commit (under the app's lock): caches stay valid unless someone else wrote
        between our last sync and this write. False: they were brought level with LMDB, this write included."""
        if self._generations.get(app_id, previous) == previous:
            self._generations[app_id] = new
            return True
        self._resync(app_id, new)
        return False

    def list_apps(self) -> list[AppSummary]:
        with self.store.read() as tx:
            return [AppSummary(app, tx.count_inputs(app.id), sum(1 for _ in tx.iter_concepts(app.id)))
                    for app in tx.list_apps()]

    def delete_app(self, app_id: str) -> None:
        self.get_app(app_id)
        with self.indexes.lock(app_id), self.store.write() as tx:
            for record in list(tx.iter_inputs(app_id)):
                tx.delete_input(app_id, record)
            for concept in list(tx.iter_concepts(app_id)):
                tx.delete_concept(app_id, concept.id)
            models = list(tx.iter_models(app_id))
            for model in models:
                tx.delete_model(app_id, model.id)
            tx.delete_feedback(app_id)
            tx.delete_dismissals(app_id)
            for workflow_id in tx.workflow_ids(app_id):
                tx.delete_workflow(app_id, workflow_id)
            tx.delete_app(app_id)
        for model in models:
            self.models.forget(app_id, model.id)
        self.indexes.forget(app_id)
        self.labels.forget(app_id)
        self.keys.revoke_app(app_id)

    def backbone(self, app: App) -> Backbone:
        return self.backbones.get(app.backbone)

    def index(self, app: App) -> VectorIndex:
        return self.indexes.get(app, self.backbone(app).dim)

    # -------------------------------------------------------------- inputs
    def add_inputs(self, app_id: str, items: list[NewInput]) -> AddedInputs:
        """All or nothing: one bad image or duplicate id refuses the whole batch, naming the culprit."""
        with self.embed_gate:
            return self.add_prepared(self.prepare_inputs(app_id, items))

    def prepare_inputs(self, app_id: str, items: list[NewInput]) -> PreparedInputs:
        """Check a batch and decode + preprocess its images, touching nothing: the import pipeline runs
        this for the next batch while the current one is embedded and stored."""
        app = self.get_app(app_id)
        ids = self._checked_ids(items)
        prepared = self.images.prepare(self.backbone(app), [item.image for item in items],
                                       [f"input {i} ({input_id})" for i, input_id in enumerate(ids)])
        return PreparedInputs(app=app, items=items, ids=ids, images=prepared)

    @staticmethod
    def _checked_ids(items: list[NewInput]) -> list[str]:
        """Validate a batch's ids, labels and metadata; its ids, new ones made where none was given."""
        ids = [check_id("input", item.id) if item.id is not None else new_id() for item in items]
        seen: set[str] = set()
        for input_id in ids:
            if input_id in seen:
                raise Conflict(f"input id {input_id!r} appears twice in the request")
            seen.add(input_id)
        for item in items:
            check_labels(item.concepts, item.not_concepts)
            check_metadata(item.metadata)
            check_regions(item.regions)
            for concept_id in itertools.chain(item.concepts, item.not_concepts):
                check_id("concept", concept_id)
        return ids

    def add_embedded(self, app_id: str, items: list[NewInput], decoded: list[DecodedImage],
                     embedded: Embedded, thumbnails: dict[str, bytes] | None = None) -> AddedInputs:
        """Store a batch whose images were decoded and embedded elsewhere (e.g. on Ray workers): the
        same checks and the same one transaction as `add_inputs`, all or nothing."""
        app = self.get_app(app_id)
        ids = self._checked_ids(items)
        for item, image in zip(items, decoded):
            if content_hash(item.image) != image.sha256:
                raise Conflict(f"input {item.id!r}: the image changed while it was being embedded")
        return self._store_inputs(app, items, ids, decoded, embedded, thumbnails or {})

    def add_prepared(self, batch: PreparedInputs) -> AddedInputs:
        """Embed what a prepared batch still needs, then store it (all or nothing)."""
        embedded = self.images.embed(self.backbone(batch.app), batch.images)
        return self._store_inputs(batch.app, batch.items, batch.ids, batch.images.decoded, embedded,
                                  batch.images.thumbnails)

    def _store_inputs(self, app: App, items: list[NewInput], ids: list[str], decoded: list[DecodedImage],
                      embedded: Embedded, thumbnails: dict[str, bytes]) -> AddedInputs:
        """One transaction for the batch, then the caches follow."""
        app_id = app.id
        backbone = self.backbone(app)
        now = time.time()
        with self.indexes.lock(app_id):
            with self.store.write() as tx:
                app = tx.get_app(app_id) or app  # fresh next_seq under the lock
                for input_id in ids:
                    if tx.get_input(app_id, input_id) is not None:
                        raise Conflict(f"input id {input_id!r} already exists")
                records = []
                for offset, (item, input_id, image) in enumerate(zip(items, ids, decoded)):
                    record = Input(id=input_id, seq=app.next_seq + offset, sha256=image.sha256,
                                   source=item.source, metadata=dict(item.metadata),
                                   concepts=list(dict.fromkeys(item.concepts)),
                                   not_concepts=list(dict.fromkeys(item.not_concepts)),
                                   created_at=now, width=image.width, height=image.height, geo=item.geo,
                                   regions=list(item.regions), crop=list(item.crop))
                    self.ensure_concepts(tx, app_id, record.concepts + record.not_concepts, now)
                    tx.put_input(app_id, record)
                    tx.retain_blob(image.sha256, item.image)
                    records.append(record)
                for sha, vector in embedded.new.items():
                    tx.put_embedding(backbone.id, sha, vector, embedded.new_norms.get(sha))
                for sha, small in thumbnails.items():
                    tx.put_thumbnail(sha, small)
                previous = app.generation
                embedders = app.embedders
                if embedded.new and embedded.embedder not in embedders:
                    # Say so when an app's vectors come from more than one runtime/precision.
                    embedders = [*embedders, embedded.embedder]
                app = msgspec.structs.replace(app, next_seq=app.next_seq + len(records), generation=previous + 1,
                                              embedders=embedders)
                tx.put_app(app)
            # Committed. Now the cache follows (an index not loaded yet is built from LMDB when needed).
            if self._wrote(app_id, previous, app.generation):
                seqs = np.asarray([r.seq for r in records], np.int64)
                self.indexes.add(app, backbone.dim, seqs, embedded.vectors)
                self.labels.put(app_id, records)
        self._labels_changed(app_id, records)
        return AddedInputs(records, len(embedded.new))

    @staticmethod
    def ensure_concepts(tx: WriteTxn, app_id: str, concept_ids: list[str], now: float) -> None:
        """Concepts named on an input are created on the fly, with the id as their name."""
        for concept_id in concept_ids:
            if tx.get_concept(app_id, concept_id) is None:
                tx.put_concept(app_id, Concept(id=concept_id, name=concept_id, created_at=now))

    def get_input(self, app_id: str, input_id: str) -> Input:
        self.get_app(app_id)
        with self.store.read() as tx:
            record = tx.get_input(app_id, input_id)
        if record is None:
            raise NotFound("input", input_id)
        return record

    def input_image(self, app_id: str, input_id: str) -> bytes:
        record = self.get_input(app_id, input_id)
        with self.store.read() as tx:
            data = tx.get_blob(record.sha256)
        if data is None:
            raise NotFound("input", input_id, f"input {input_id!r} has no stored image")
        return data

    def input_thumbnail(self, app_id: str, input_id: str) -> bytes:
        record = self.get_input(app_id, input_id)
        return thumbnail(self.store, record.sha256, self.input_image(app_id, input_id))

    def list_inputs(self, app_id: str, page: int = 1, per_page: int = 20,
                    flt: SearchFilter | None = None) -> list[Input]:
        """Newest first; stable across pages while nothing is added."""
        self.get_app(app_id)
        offset, limit = page_window(page, per_page)
        with self.store.read() as tx:
            return [hit.input for hit in filtered_inputs(tx, app_id, flt or SearchFilter(), offset, limit)]

    def count_inputs(self, app_id: str) -> int:
        self.get_app(app_id)
        with self.store.read() as tx:
            return tx.count_inputs(app_id)

    def edit_inputs(self, app_id: str, action: EditAction | str, edits: list[InputEdit]) -> list[Input]:
        """Merge/remove/overwrite concepts and metadata of several inputs in one transaction."""
        self.get_app(app_id)
        try:
            action = EditAction(action)
        except ValueError:
            raise InvalidArgument(f"action must be merge, remove or overwrite, got {action!r}") from None
        for edit in edits:
            for concept_id in itertools.chain(edit.concepts, edit.not_concepts):
                check_id("concept", concept_id)
        now = time.time()
        with self.indexes.lock(app_id):
            with self.store.write() as tx:
                before, after = [], []
                for edit in edits:
                    record = tx.get_input(app_id, edit.input_id)
                    if record is None:
                        raise NotFound("input", edit.input_id)
                    new = apply_edit(record, action, edit)
                    self.ensure_concepts(tx, app_id, new.concepts + new.not_concepts, now)
                    tx.put_input(app_id, new, previous=record)
                    before.append(record)
                    after.append(new)
                generations = tx.bump_generation(app_id)
            self._wrote(app_id, *generations)
            self.labels.put(app_id, after)
        self._labels_changed(app_id, before + after)
        return after

    def delete_inputs(self, app_id: str, input_ids: list[str]) -> int:
        """Delete the named inputs, all or none, in one transaction: an unknown id refuses the call."""

        def named(tx: WriteTxn) -> list[Input]:
            records = []
            for input_id in dict.fromkeys(input_ids):
                record = tx.get_input(app_id, input_id)
                if record is None:
                    raise NotFound("input", input_id)  # aborts the transaction: nothing deleted
                records.append(record)
            return records

        return self._delete_where(app_id, named)

    def delete_all_inputs(self, app_id: str) -> int:
        return self._delete_where(app_id, lambda tx: list(tx.iter_inputs(app_id)))

    def _delete_where(self, app_id: str, select: Callable[[WriteTxn], list[Input]]) -> int:
        app = self.get_app(app_id)
        with self.indexes.lock(app_id):
            with self.store.write() as tx:
                records = select(tx)
                for record in records:
                    tx.delete_input(app_id, record)
                generations = tx.bump_generation(app_id)
            self._wrote(app_id, *generations)
            seqs = [r.seq for r in records]
            self.indexes.remove(app, np.asarray(seqs, np.int64))
            self.labels.remove(app_id, seqs)
        self._labels_changed(app_id, records)
        return len(records)

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

    def _labels_changed(self, app_id: str, records: list[Input]) -> None:
        """Schedule the debounced retrain of trained models whose examples these inputs are."""
        if self.retrainer is None:
            return
        touched = {c for r in records for c in (*r.concepts, *r.not_concepts)}
        with self.store.read() as tx:
            models = list(tx.iter_models(app_id))
            for model in models:
                if not model.auto_retrain:
                    continue
                relevant = not model.closed_environment or touched & set(model.concept_ids)
                trained = any(v.status == "trained" for v in tx.iter_versions(app_id, model.id))
                if relevant and trained:
                    self.retrainer.touch(app_id, model.id)

    def _retrain(self, app_id: str, model_id: str) -> None:
        try:
            self.models.train(app_id, model_id, wait=True)
        except Busy:
            if self.retrainer is not None:
                self.retrainer.touch(app_id, model_id)  # the app's queue is full: try again later

    def store_feedback(self, app_id: str, body: dict[str, Any], *, model_id: str | None = None,
                       version_id: str | None = None, route: str = "") -> None:
        """Keep a person's feedback on an answer (Clarifai's feedback routes), one record each, about
        this app's own models only; bounded in size per record and in count per app."""
        self.get_app(app_id)
        if model_id is not None:
            self.models.version(app_id, model_id, version_id) if version_id else self.models.get(app_id, model_id)
        record = msgspec.json.encode({"at": time.time(), "model_id": model_id, "version_id": version_id,
                                      "path": route, "body": body})
        if len(record) > self.config.max_feedback_bytes:
            raise InvalidArgument(f"feedback is {len(record)} bytes, limit is {self.config.max_feedback_bytes}")
        with self.store.write() as tx:
            if tx.feedback_count(app_id) >= self.config.max_feedback_per_app:
                raise QuotaExceeded(f"this app already holds {self.config.max_feedback_per_app} feedback records")
            tx.put_feedback(app_id, new_id(), record)

    # ------------------------------------------------------------ concepts
    def add_concepts(self, app_id: str, concepts: list[tuple[str, str | None]]) -> list[Concept]:
        self.get_app(app_id)
        now = time.time()
        created = [Concept(id=check_id("concept", cid), name=check_name("concept", name or cid), created_at=now)
                   for cid, name in concepts]
        with self.store.write() as tx:
            for concept in created:
                if tx.get_concept(app_id, concept.id) is not None:
                    raise Conflict(f"concept {concept.id!r} already exists")
                tx.put_concept(app_id, concept)
        return created

    def rename_concepts(self, app_id: str, names: list[tuple[str, str]]) -> list[Concept]:
        self.get_app(app_id)
        with self.store.write() as tx:
            renamed = []
            for concept_id, name in names:
                concept = tx.get_concept(app_id, concept_id)
                if concept is None:
                    raise NotFound("concept", concept_id)
                concept = msgspec.structs.replace(concept, name=check_name("concept", name))
                tx.put_concept(app_id, concept)
                renamed.append(concept)
        return renamed

    def get_concept(self, app_id: str, concept_id: str) -> Concept:
        self.get_app(app_id)
        with self.store.read() as tx:
            concept = tx.get_concept(app_id, concept_id)
        if concept is None:
            raise NotFound("concept", concept_id)
        return concept

    def list_concepts(self, app_id: str, page: int = 1, per_page: int = 20) -> list[Concept]:
        self.get_app(app_id)
        offset, limit = page_window(page, per_page)
        with self.store.read() as tx:
            return list(itertools.islice(tx.iter_concepts(app_id), offset, offset + limit))

    def search_concepts(self, app_id: str, name: str, *, page: int = 1, per_page: int = 20) -> list[Concept]:
        """Case-insensitive name match; '*' is a wildcard (Clarifai's concept search), one page of it."""
        self.get_app(app_id)
        offset, limit = page_window(page, per_page)
        pattern = name.lower()
        with self.store.read() as tx:
            found = (c for c in tx.iter_concepts(app_id)
                     if fnmatch.fnmatchcase(c.name.lower(), pattern) or fnmatch.fnmatchcase(c.id.lower(), pattern))
            return list(itertools.islice(found, offset, offset + limit))

    def concept_names(self, app_id: str) -> dict[str, str]:
        """Every concept id of the app with its display name."""
        with self.store.read() as tx:
            return {c.id: c.name for c in tx.iter_concepts(app_id)}

    def concepts_by_id(self, app_id: str, concept_ids: list[str]) -> list[Concept]:
        """The named concepts that exist, in the order given."""
        with self.store.read() as tx:
            return [c for cid in concept_ids if (c := tx.get_concept(app_id, cid)) is not None]

    def inputs_labeled_with(self, app_id: str, concept_ids: list[str], *, page: int = 1,
                            per_page: int = 20) -> list[Input]:
        """Inputs annotated (positively) with any of the concepts, newest first."""
        self.get_app(app_id)
        with self.store.read() as tx:
            found = [tx.labelled_seqs(app_id, c) for c in concept_ids]
        seqs = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
        if not len(seqs):
            return []
        flt = SearchFilter(seqs=tuple(int(s) for s in seqs))
        return [hit.input for hit in self.search_by_filter(app_id, flt, page=page, per_page=per_page)]

    def ready(self) -> Readiness:
        """Whether this process should get traffic: the store answers, the default backbone is loaded,
        and the training queue is not full."""
        with self.store.read():
            pass  # the store answers
        loaded = self.backbones.loaded_ids()
        reasons = []
        if DEFAULT_BACKBONE not in loaded:
            reasons.append(f"backbone {DEFAULT_BACKBONE} is not loaded yet")
        if self.models.queue.saturated:
            reasons.append("the training queue is full")
        return Readiness(ready=not reasons, reasons=reasons, backbones_loaded=loaded,
                         training_jobs=self.models.queue.pending())

    def concept_counts(self, app_id: str, concept_id: str) -> tuple[int, int]:
        """(positive, negative) annotation counts."""
        with self.store.read() as tx:
            return (len(tx.labelled_seqs(app_id, concept_id, True)),
                    len(tx.labelled_seqs(app_id, concept_id, False)))

    # -------------------------------------------------------------- search
    def search(self, app_id: str, query: SearchQuery) -> list[SearchHit]:
        """Run a search query; predicted-concept filters share one deadline (TooLong past it)."""
        app = self.get_app(app_id)
        predicted = list(dict.fromkeys(query.predicted))  # a repeated filter costs nothing more
        if len({(p.concept_id, p.positive) for p in predicted}) > MAX_PREDICTED_CONCEPTS:
            raise InvalidArgument(f"a search may filter by at most {MAX_PREDICTED_CONCEPTS} predicted concepts")
        sources = [s for s in (query.image, query.input_id, query.text) if s is not None]
        deadline = time.monotonic() + self.config.search_deadline_seconds
        allowed: set[int] | None = None
        for wanted in predicted:
            seqs = self.models.inputs_predicted(app_id, wanted.concept_id, wanted.positive, deadline)
            if seqs is None:  # no trained model knows the concept: match its name by text (CLIP)
                sources.append(wanted.name or wanted.concept_id)
                query = msgspec.structs.replace(query, text=wanted.name or wanted.concept_id)
                continue
            allowed = seqs if allowed is None else allowed & seqs
        if len(sources) > 1:
            raise InvalidArgument("a search can have only one image, input or text to match")
        flt = SearchFilter(concepts=query.concepts, metadata=query.metadata,
                           seqs=None if allowed is None else tuple(sorted(allowed)), geo=query.geo,
                           input_ids=query.input_ids, source_urls=query.source_urls)
        page, per_page = query.page, query.per_page
        if query.input_id is not None and query.crop:
            # Part of a stored image: that part is embedded (the stored vector is of the whole image).
            image = crop_fraction(self.input_image(app_id, query.input_id), list(query.crop), self.config.images)
            query = msgspec.structs.replace(query, image=image, input_id=None)
        if query.image is not None:
            vector = self.image_vectors(app, [query.image])[0]
            return self.search_by_vector(app, vector, page=page, per_page=per_page, flt=flt)
        if query.input_id is not None:
            return self.search_by_input(app_id, query.input_id, page=page, per_page=per_page, flt=flt)
        if query.text is not None:
            return self.search_by_text(app_id, query.text, page=page, per_page=per_page, flt=flt)
        if flt.empty:
            raise InvalidArgument("the query is empty: give query.ands")
        return self.search_by_filter(app_id, flt, page=query.page, per_page=query.per_page)

    def search_by_image(self, app_id: str, image: bytes, *, page: int = 1, per_page: int = 20,
                        flt: SearchFilter | None = None) -> list[SearchHit]:
        app = self.get_app(app_id)
        return self.search_by_vector(app, self.image_vectors(app, [image])[0], page=page, per_page=per_page, flt=flt)

    def image_vectors(self, app: App, images: list[bytes]) -> np.ndarray:
        """Decode and embed (or look up) images for a prediction or search, within the embedding gate."""
        return self.image_embedded(app, images).vectors

    def image_embedded(self, app: App, images: list[bytes]) -> Embedded:
        """Vectors and feature norms of images (embedded, or looked up), within the embedding gate."""
        backbone = self.backbone(app)
        with self.embed_gate:
            return self.images.embed(backbone, self.images.prepare(backbone, images))

    # ------------------------------------------------------- any model
    def predict(self, app_id: str, model_id: str, inputs: Sequence[str | bytes | VideoClip],
                version_id: str | None = None) -> PredictAnswer:
        """Stored inputs (ids), new images (bytes) and videos (one answer per sampled frame) through a
        custom model, the General model or the General embedding model; every row is embedded once and
        scored in one call."""
        if not inputs:
            raise InvalidArgument("no inputs to predict")
        app = self.get_app(app_id)
        view = self.answering(app_id, model_id, version_id)  # fails before embedding if untrained
        assert view.version is not None
        rows = self.embed_items(app, inputs)
        return PredictAnswer(view, self.score_rows(app, rows, model_id, view.version.id, ()))

    def answering(self, app_id: str, model_id: str, version_id: str | None = None) -> ModelView:
        """The model and the version a prediction would use: the named one or the latest trained one
        (ModelNotTrained when there is none); a built-in model's one version."""
        kind = builtin_kind(model_id)
        if kind is not None:
            model, version = general_records(self.backbone(self.get_app(app_id)), kind)
            return ModelView(model, version, [], kind, public=True)
        version = self.models.trained_version(app_id, model_id, version_id)
        return ModelView(self.models.get(app_id, model_id), version, [])

    def embed_items(self, app: App, inputs: Sequence[str | bytes | VideoClip]) -> EmbeddedRows:
        """Every input as rows of one matrix: a row per image or stored input, a row per video frame."""
        backbone = self.backbone(app)
        still = [i for i in inputs if not isinstance(i, VideoClip)]
        vectors, norms = self.item_vectors(app, still) if still else (np.zeros((0, backbone.dim), np.float32),
                                                                       np.zeros(0, np.float32))
        spans: list[tuple[int, int]] = []
        frames: list[list[FrameTime]] = []
        parts, part_norms, row, at = [vectors], [norms], len(still), 0
        for item in inputs:
            if isinstance(item, VideoClip):
                samples, clip_vectors, clip_norms = self.video_vectors(app, item)
                parts.append(clip_vectors)
                part_norms.append(clip_norms)
                spans.append((row, row + len(samples)))
                frames.append(samples)
                row += len(samples)
            else:
                spans.append((at, at + 1))
                frames.append([])
                at += 1
        return EmbeddedRows(np.concatenate(parts), np.concatenate(part_norms), spans, frames, still)

    def score_rows(self, app: App, rows: EmbeddedRows, model_id: str, version_id: str | None,
                   concepts: Sequence[str]) -> list[InputAnswer]:
        """One model over embedded rows, regrouped per input (`concepts`: the zero-shot names on CLIP apps)."""
        kind = builtin_kind(model_id)
        scored: list[Prediction | None]
        if kind is ModelKind.EMBED:
            scored = [None] * len(rows.vectors)
        elif kind is ModelKind.CONCEPT:
            missing = [i for i in range(len(rows.still)) if not np.isfinite(rows.norms[i])]
            if missing and not self.backbone(app).supports_text:  # vectors stored before norms were kept
                rows.norms[missing] = self._feature_norms(app, [self._image_of(app.id, rows.still[i]) for i in missing])
            scored = list(self.general_predictions(app, rows.vectors, rows.norms, concepts))
        else:
            scored = list(self.models.predict_vectors(app.id, model_id, rows.vectors, version_id))
        answers = []
        for (start, stop), samples in zip(rows.spans, rows.frames):
            if samples:
                answers.append(InputAnswer(frames=[
                    FrameAnswer(s.index, s.time_ms, scored[start + j], rows.vectors[start + j])
                    for j, s in enumerate(samples)]))
            else:
                answers.append(InputAnswer(prediction=scored[start], embedding=rows.vectors[start]))
        return answers

    def remember_image(self, app_id: str, data: bytes) -> str:
        """Keep a predicted image a while (bounded) so its answer can link it; its content hash."""
        sha = content_hash(data)
        self.recent_images.put(app_id, sha, data)
        return sha

    def recent_image(self, app_id: str, sha256: str) -> bytes:
        self.get_app(app_id)
        data = self.recent_images.get(app_id, sha256)
        if data is None:
            raise NotFound("image", sha256, "that predicted image is no longer kept (they are kept for an hour)")
        return data

    def video_vectors(self, app: App, clip: VideoClip) -> tuple[list[FrameTime], np.ndarray, np.ndarray]:
        """Sampled frames of a video with their unit vectors and feature norms, embedded a batch at a
        time as they are decoded, within the embedding gate (decoding a video is as heavy as embedding it)."""
        backbone = self.backbone(app)
        times: list[FrameTime] = []
        features: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        with self.embed_gate:
            for sample in sample_frames(clip.data, self.config.videos, clip.sample_ms):
                times.append(sample.at)
                batch.append(backbone.preprocess(sample.image))
                if len(batch) == self.config.embed_batch_size:
                    features.append(backbone.features(batch))
                    batch = []
            if batch:
                features.append(backbone.features(batch))
        stacked = np.concatenate(features)
        return times, l2_normalise(stacked), np.linalg.norm(stacked, axis=1).astype(np.float32)

    def item_vectors(self, app: App, items: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors and feature norms (NaN where not kept) of stored inputs (ids) and new images
        (bytes), in the order given; new images are embedded within the gate."""
        vectors = np.zeros((len(items), self.backbone(app).dim), np.float32)
        norms = np.full(len(items), np.nan, np.float32)
        stored = {i: item for i, item in enumerate(items) if isinstance(item, str)}
        new = {i: item for i, item in enumerate(items) if isinstance(item, bytes)}
        if new:
            embedded = self.image_embedded(app, list(new.values()))
            vectors[list(new)], norms[list(new)] = embedded.vectors, embedded.norms
        if stored:
            records = [self.get_input(app.id, input_id) for input_id in stored.values()]
            vectors[list(stored)] = self.embeddings_of(app, np.asarray([r.seq for r in records], np.int64))
            with self.store.read() as tx:
                norms[list(stored)] = [tx.get_feature_norm(app.backbone, r.sha256) or np.nan for r in records]
        return vectors, norms

    def general_predictions(self, app: App, vectors: np.ndarray, norms: np.ndarray,
                            concepts: Sequence[str] = ()) -> list[Prediction]:
        """ImageNet-1k on EfficientNet apps; zero-shot over `concepts` (default: the app's) on CLIP apps."""
        backbone = self.backbone(app)
        if backbone.supports_text:
            from loupe.workflow import zero_shot_predictions

            return zero_shot_predictions(self, app.id, vectors, tuple(concepts))
        return imagenet_predictions(backbone, vectors, norms)

    def describe_model(self, app_id: str, model_id: str, version_id: str | None = None) -> ModelView:
        """A model and one of its versions (the newest by default), the built-in models included."""
        if builtin_kind(model_id) is not None:
            return self.answering(app_id, model_id)
        model = self.models.get(app_id, model_id)
        return ModelView(model, self.models.version(app_id, model_id, version_id),
                         self.concepts_by_id(app_id, model.concept_ids))

    def model_versions(self, app_id: str, model_id: str, page: int = 1, per_page: int = 20) -> list[ModelVersion]:
        """A model's versions, newest first; a built-in model has its one fixed version."""
        if builtin_kind(model_id) is None:
            return self.models.versions(app_id, model_id, page=page, per_page=per_page)
        offset, limit = page_window(page, per_page)
        version = self.answering(app_id, model_id).version
        return ([] if version is None else [version])[offset:offset + limit]

    def model_version(self, app_id: str, model_id: str, version_id: str) -> ModelVersion:
        if builtin_kind(model_id) is None:
            return self.models.version(app_id, model_id, version_id)
        version = self.answering(app_id, model_id).version
        if version is None or version.id != version_id:
            raise NotFound("version", version_id)
        return version

    def builtin_models(self, app_id: str) -> list[ModelView]:
        """The General model and the General embedding model, as this app's backbone answers them."""
        return [self.answering(app_id, model_id) for model_id in (GENERAL_MODEL_ID, GENERAL_EMBED_MODEL_ID)]

    def list_models(self, app_id: str, page: int = 1, per_page: int = 20) -> list[ModelView]:
        """The built-in models first (as Clarifai lists its public ones), then the app's, newest first."""
        offset, limit = page_window(page, per_page)
        builtin = self.builtin_models(app_id)
        custom = self.models.ordered(app_id)[max(0, offset - len(builtin)):max(0, offset + limit - len(builtin))]
        return builtin[offset:offset + limit] + [self.describe_model(app_id, m.id) for m in custom]

    def search_models(self, app_id: str, name: str = "*", kind: str = "") -> list[ModelView]:
        """Models whose name or id matches (case-insensitive, '*' wildcards) and of the type asked for
        (Clarifai's `concept` or `embed`; empty: any); built-in ones first."""
        pattern = (name or "*").lower()
        found = [v for v in self.builtin_models(app_id) if (not kind or v.kind == kind) and
                 (fnmatch.fnmatchcase(v.model.name.lower(), pattern) or fnmatch.fnmatchcase(v.model.id, pattern))]
        return found + [self.describe_model(app_id, m.id) for m in self.models.search(app_id, name, kind)]

    def _image_of(self, app_id: str, item: str | bytes) -> bytes:
        return item if isinstance(item, bytes) else self.input_image(app_id, item)

    def _feature_norms(self, app: App, images: list[bytes]) -> np.ndarray:
        """Norms for vectors stored before norms were kept: the images go through the network again."""
        backbone = self.backbone(app)
        with self.embed_gate:
            arrays = [backbone.preprocess(img) for img in
                      (decode_image(b, self.config.images).image for b in images) if img is not None]
            return np.linalg.norm(backbone.features(arrays), axis=1).astype(np.float32)

    def search_by_input(self, app_id: str, input_id: str, *, page: int = 1, per_page: int = 20,
                        flt: SearchFilter | None = None) -> list[SearchHit]:
        app = self.get_app(app_id)
        record = self.get_input(app_id, input_id)
        with self.store.read() as tx:
            vector = tx.get_embedding(app.backbone, record.sha256)
        if vector is None:
            raise NotFound("input", input_id, f"input {input_id!r} has no embedding for backbone {app.backbone}")
        return self.search_by_vector(app, vector, page=page, per_page=per_page, flt=flt)

    def search_by_text(self, app_id: str, text: str, *, page: int = 1, per_page: int = 20,
                       flt: SearchFilter | None = None) -> list[SearchHit]:
        app = self.get_app(app_id)
        if not text.strip():
            raise InvalidArgument("search text must not be empty")
        vector = self.backbone(app).embed_text([text])[0]  # raises CapabilityMissing without a text tower
        return self.search_by_vector(app, vector, page=page, per_page=per_page, flt=flt)

    def search_by_vector(self, app: App, vector: np.ndarray, *, page: int = 1, per_page: int = 20,
                         flt: SearchFilter | None = None) -> list[SearchHit]:
        offset, limit = page_window(page, per_page)
        index = self.index(app)
        with self.store.read() as tx:
            allow = allowed_seqs(tx, app.id, flt or SearchFilter())
            if allow is not None and len(allow) == 0:
                return []
            ids, scores = self._ranked(index, vector, offset + limit, allow)
            return hits_for(tx, app.id, ids[offset:offset + limit], scores[offset:offset + limit])

    @staticmethod
    def _ranked(index: VectorIndex, vector: np.ndarray, wanted: int,
                allow: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The best `wanted` hits ordered by (score as answered, to 6 places; then sequence number), so
        pages agree with one another when scores tie (identical images): the index is asked for more
        until the hits past the last wanted one score lower (at most 1,024 more)."""
        k = wanted
        while True:
            found = index.search(vector[None, :], k + 1, allow=allow)[0]
            rounded = np.round(found.scores.astype(np.float64), 6)
            if len(found.ids) <= k or rounded[-1] < rounded[wanted - 1] or k >= wanted + 1024:
                break
            k = min(2 * k, wanted + 1024)
        order = np.lexsort((found.ids, -rounded))
        return found.ids[order], found.scores[order]

    def search_by_filter(self, app_id: str, flt: SearchFilter, *, page: int = 1,
                         per_page: int = 20) -> list[SearchHit]:
        self.get_app(app_id)
        offset, limit = page_window(page, per_page)
        with self.store.read() as tx:
            return filtered_inputs(tx, app_id, flt, offset, limit)

