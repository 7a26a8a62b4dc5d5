"""An app's inputs: add (all or nothing), read, list, label edits, delete.

Every write is one unit of work: validation first, slow work (decoding, embedding) outside locks, then
one LMDB transaction through `AppContext.writing`, after which the index and label mirror follow.
"""

from __future__ import annotations

import fnmatch
import itertools
import time
from enum import StrEnum
from typing import Any

import msgspec
import numpy as np

from loupe.apps.context import AppContext, InputWrite
from loupe.errors import Conflict, InvalidArgument, NotFound
from loupe.ids import check_id, new_id
from loupe.intake.embedding import Embedder
from loupe.intake.image_pipeline import Embedded, Prepared
from loupe.intake.imaging import DecodedImage, content_hash
from loupe.intake.labels import EditAction, InputEdit, apply_edit, check_labels, check_metadata, check_regions
from loupe.intake.recent_images import RecentImages
from loupe.intake.thumbnails import thumbnail
from loupe.pagination import page_window
from loupe.store.filters import SearchFilter, filtered_inputs
from loupe.store.records import SYSTEM, Actor, App, GeoPoint, Input, Region


class Presence(StrEnum):
    """What the app already holds of a file: nothing under its id, the same content, other content;
    the Ray import adds REUSE (a stored vector of this content) and SHIP (embed it on the cluster)."""

    NEW = "new"
    SAME = "same"
    CHANGED = "changed"
    REUSE = "reuse"
    SHIP = "ship"


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


class PreparedInputs(msgspec.Struct):
    app: App
    items: list[NewInput]
    ids: list[str]
    images: Prepared


class AddedInputs(msgspec.Struct):
    inputs: list[Input]  # one per item, in order: the new input, or the stored one a copy was linked to
    embedded: int  # how many images had to go through the backbone (the rest were cached)
    # Per item: the id of an input of the app that already holds the same image ("" if none). An item
    # without an id is then linked to it (not added again; its labels merged onto it, its metadata keys
    # and geo only where the stored input has none); an item with its own id is added as asked.
    duplicate_of: list[str] = []
    linked: int = 0  # items linked to a stored copy instead of added


def _replace(records: list[Input], record: Input) -> bool:
    """Put `record` in place of the entry with its id, if there is one."""
    for i, r in enumerate(records):
        if r.id == record.id:
            records[i] = record
            return True
    return False


def checked_ids(items: list[NewInput]) -> list[str]:
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


class Inputs:
    def __init__(self, context: AppContext, embedder: Embedder) -> None:
        self._context = context
        self._store = context.store
        self._embedder = embedder
        self._images = embedder.images
        self._recent = RecentImages()

    # ------------------------------------------------------------------ add
    def add(self, app_id: str, items: list[NewInput], *, by: Actor = SYSTEM) -> AddedInputs:
        """All or nothing: one bad image or duplicate id refuses the whole batch, naming the culprit."""
        with self._embedder.gate:
            return self.add_prepared(self.prepare(app_id, items), by=by)

    def prepare(self, app_id: str, items: list[NewInput]) -> PreparedInputs:
        """Check a batch and decode + preprocess its images, touching nothing: the import pipeline runs
        this for the next batch while the current one is embedded and stored."""
        app = self._context.sync(app_id)
        ids = checked_ids(items)
        prepared = self._images.prepare(self._context.backbone(app), [item.image for item in items],
                                        [f"input {i} ({input_id})" for i, input_id in enumerate(ids)])
        return PreparedInputs(app=app, items=items, ids=ids, images=prepared)

    def add_prepared(self, batch: PreparedInputs, *, by: Actor = SYSTEM) -> AddedInputs:
        """Embed what a prepared batch still needs, then store it (all or nothing)."""
        backbone = self._context.backbone(batch.app)
        embedded = self._images.embed(backbone, batch.images)
        self._context.tell_embedded(backbone.id, embedded.embedder, len(embedded.new), embedded.seconds)
        return self._store_inputs(batch.app, batch.items, batch.ids, batch.images.decoded, embedded,
                                  batch.images.thumbnails, by)

    def add_embedded(self, app_id: str, items: list[NewInput], decoded: list[DecodedImage],
                     embedded: Embedded, thumbnails: dict[str, bytes] | None = None, *,
                     by: Actor = SYSTEM) -> AddedInputs:
        """Store a batch whose images were decoded and embedded elsewhere (e.g. on Ray workers): the
        same checks and the same one transaction as `add`, all or nothing."""
        app = self._context.sync(app_id)
        ids = checked_ids(items)
        for item, image in zip(items, decoded):
            if content_hash(item.image) != image.sha256:
                raise Conflict(f"input {item.id!r}: the image changed while it was being embedded")
        return self._store_inputs(app, items, ids, decoded, embedded, thumbnails or {}, by)

    def _store_inputs(self, app: App, items: list[NewInput], ids: list[str], decoded: list[DecodedImage],
                      embedded: Embedded, thumbnails: dict[str, bytes], by: Actor) -> AddedInputs:
        backbone = self._context.backbone(app)
        now = time.time()
        labels = self._context.labels.get(app.id)
        answer: list[Input] = []
        duplicate_of: list[str] = []
        new_rows: list[int] = []
        with self._context.writing(app.id, by) as write:
            tx, app = write.tx, write.app
            for input_id in ids:
                if tx.get_input(app.id, input_id) is not None:
                    raise Conflict(f"input id {input_id!r} already exists")
            in_batch: dict[str, Input] = {}
            for row, (item, input_id, image) in enumerate(zip(items, ids, decoded)):
                held = labels.holding(image.sha256)
                copy = in_batch.get(image.sha256) or (tx.get_input(app.id, held.input_id) if held else None)
                duplicate_of.append(copy.id if copy is not None else "")
                if copy is not None and item.id is None:  # linked: the stored input answers, with the labels
                    linked = apply_edit(copy, EditAction.MERGE, InputEdit(
                        input_id=copy.id, concepts=list(item.concepts), not_concepts=list(item.not_concepts),
                        # Metadata only where the stored input has none for the key: it stays as it was.
                        metadata={k: v for k, v in item.metadata.items() if k not in copy.metadata} or None,
                        geo=copy.geo or item.geo))
                    if linked != copy:
                        self._context.ensure_concepts(tx, app.id, linked.concepts + linked.not_concepts, now)
                        tx.put_input(app.id, linked, previous=copy)
                        if not (_replace(write.put, linked) or _replace(write.edited, linked)):
                            write.edited.append(linked)
                        write.touched += [copy, linked]
                    in_batch[image.sha256] = linked
                    answer.append(linked)
                    continue
                record = Input(id=input_id, seq=app.next_seq + len(write.put), sha256=image.sha256,
                               source=item.source, metadata=dict(item.metadata),
                               concepts=list(dict.fromkeys(item.concepts)),
                               not_concepts=list(dict.fromkeys(item.not_concepts)),
                               created_at=now, width=image.width, height=image.height, geo=item.geo,
                               regions=list(item.regions), crop=list(item.crop))
                self._context.ensure_concepts(tx, app.id, record.concepts + record.not_concepts, now)
                tx.put_input(app.id, record)
                tx.retain_blob(image.sha256, item.image)
                write.put.append(record)
                new_rows.append(row)
                answer.append(record)
                in_batch.setdefault(image.sha256, record)
            for sha, vector in embedded.new.items():
                tx.put_embedding(backbone.id, sha, vector, embedded.new_norms.get(sha))
            for sha, small in thumbnails.items():
                tx.put_thumbnail(sha, small)
            # Say so when an app's vectors come from more than one runtime/precision. Reused vectors
            # (the same content in another app) count their backbone's embedders.
            made = [embedded.embedder] if embedded.new else []
            if embedded.new:
                tx.add_backbone_embedder(backbone.id, embedded.embedder)
            if len(embedded.new) < len(write.put):
                made += tx.backbone_embedders(backbone.id)
            embedders = list(dict.fromkeys([*app.embedders, *made]))
            write.app = msgspec.structs.replace(app, next_seq=app.next_seq + len(write.put), embedders=embedders)
            write.vectors = embedded.vectors[new_rows]
            write.touched += write.put
        latest = {r.id: r for r in write.put + write.edited}  # a record linked to later in the batch, as edited
        answer = [latest.get(a.id, a) for a in answer]
        return AddedInputs(answer, len(embedded.new), duplicate_of, len(items) - len(new_rows))

    # ----------------------------------------------------------------- read
    def get(self, app_id: str, input_id: str) -> Input:
        self._context.sync(app_id)
        return self._context.get_input(app_id, input_id)

    def presence(self, app_id: str, input_id: str, sha256: str, *, vectors: bool = False) -> Presence:
        """What the app holds of a file about to be imported under this id with this content; with
        `vectors`, whether a new one's content already has a stored vector (REUSE) or not (SHIP)."""
        with self._store.read() as tx:
            record = tx.get_input(app_id, input_id)
            if record is not None:
                return Presence.SAME if record.sha256 == sha256 else Presence.CHANGED
            if not vectors:
                return Presence.NEW
            app = tx.get_app(app_id)
            if app is None:
                raise NotFound("app", app_id)
            return Presence.REUSE if tx.get_embedding(app.backbone, sha256) is not None else Presence.SHIP

    def image(self, app_id: str, input_id: str) -> bytes:
        self._context.sync(app_id)
        return self._context.image_of(app_id, input_id)

    def thumbnail(self, app_id: str, input_id: str) -> bytes:
        record = self.get(app_id, input_id)
        return thumbnail(self._store, record.sha256, lambda: self._context.image_of(app_id, input_id))

    def list_page(self, app_id: str, page: int = 1, per_page: int = 20, flt: SearchFilter | None = None) -> list[Input]:
        """Newest first; stable across pages while nothing is added."""
        self._context.sync(app_id)
        offset, limit = page_window(page, per_page)
        with self._store.read() as tx:
            return [hit.input for hit in filtered_inputs(tx, app_id, flt or SearchFilter(), offset, limit)]

    def count(self, app_id: str) -> int:
        self._context.sync(app_id)
        with self._store.read() as tx:
            return tx.count_inputs(app_id)

    def matching(self, app_id: str, targets: list[str], hashes: dict[str, str] | None = None) -> list[str]:
        """The ids of the app's inputs that `targets` name, in order, each once: an image file (`hashes`
        gives its content hash: every input holding that image), an input id, or a glob (`*`, `?`,
        `[...]`) over ids and import sources (e.g. 'hat/*.jpg' for a folder import's hat/ photos).
        NotFound names a target that matches nothing (nothing is chosen then)."""
        self._context.sync(app_id)
        found: dict[str, None] = {}
        records: list[Input] | None = None
        for target in targets:
            hits: list[str] = []
            sha = (hashes or {}).get(target)
            if sha:  # the label mirror knows every input's content hash: no LMDB walk
                hits = [e.input_id for e in self._context.labels.get(app_id).entries.values() if e.sha256 == sha]
            if not hits:
                with self._store.read() as tx:
                    if tx.get_input(app_id, target) is not None:
                        hits = [target]
            if not hits and any(c in target for c in "*?["):
                records = records if records is not None else self._all(app_id)
                hits = [r.id for r in records if fnmatch.fnmatchcase(r.id, target)
                        or (r.source and fnmatch.fnmatchcase(r.source, target))]
            if not hits:
                raise NotFound("input", target, f"no input of app {app_id!r} is {target!r} (an id, an image file "
                                                "stored in the app, or a pattern over ids and import paths)")
            found.update(dict.fromkeys(hits))
        return list(found)

    def _all(self, app_id: str) -> list[Input]:
        with self._store.read() as tx:
            return list(tx.iter_inputs(app_id, newest_first=False))

    def unlabeled(self, app_id: str, *, page: int = 1, per_page: int = 20) -> list[Input]:
        """Inputs with no label at all (neither a concept nor a not-concept), newest first."""
        self._context.sync(app_id)
        entries = self._context.labels.get(app_id).entries
        seqs = tuple(s for s, e in entries.items() if not (e.positives or e.negatives))
        return self.list_page(app_id, page, per_page, SearchFilter(seqs=seqs)) if seqs else []

    def labeled_with(self, app_id: str, concept_ids: list[str], *, page: int = 1, per_page: int = 20) -> list[Input]:
        """Inputs annotated (positively) with any of the concepts, newest first."""
        self._context.sync(app_id)
        with self._store.read() as tx:
            found = [tx.labelled_seqs(app_id, c) for c in concept_ids]
        seqs = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
        if not len(seqs):
            return []
        return self.list_page(app_id, page, per_page, SearchFilter(seqs=tuple(int(s) for s in seqs)))

    # ---------------------------------------------------------------- write
    def edit(self, app_id: str, action: EditAction | str, edits: list[InputEdit], *,
             by: Actor = SYSTEM) -> list[Input]:
        """Merge/remove/overwrite concepts and metadata of several inputs in one transaction."""
        self._context.sync(app_id)
        try:
            action = EditAction(action)
        except ValueError:
            raise InvalidArgument(f"action must be merge, remove or overwrite, got {action!r}") from None
        for edit in edits:
            for concept_id in itertools.chain(edit.concepts, edit.not_concepts):
                check_id("concept", concept_id)
        now = time.time()
        with self._context.writing(app_id, by) as write:
            for edit in edits:
                record = write.tx.get_input(app_id, edit.input_id)
                if record is None:
                    raise NotFound("input", edit.input_id)
                new = apply_edit(record, action, edit)
                self._context.ensure_concepts(write.tx, app_id, new.concepts + new.not_concepts, now)
                write.tx.put_input(app_id, new, previous=record)
                write.put.append(new)
                write.touched += [record, new]
        return write.put

    def delete(self, app_id: str, input_ids: list[str], *, by: Actor = SYSTEM) -> int:
        """Delete the named inputs, all or none, in one transaction: an unknown id refuses the call."""
        self._context.sync(app_id)
        with self._context.writing(app_id, by) as write:
            for input_id in dict.fromkeys(input_ids):
                record = write.tx.get_input(app_id, input_id)
                if record is None:
                    raise NotFound("input", input_id)  # aborts the transaction: nothing deleted
                write.removed.append(record)
            self._remove(app_id, write)
        return len(write.removed)

    def delete_all(self, app_id: str, *, by: Actor = SYSTEM) -> int:
        self._context.sync(app_id)
        with self._context.writing(app_id, by) as write:
            write.removed = list(write.tx.iter_inputs(app_id))
            self._remove(app_id, write)
        return len(write.removed)

    @staticmethod
    def _remove(app_id: str, write: InputWrite) -> None:
        for record in write.removed:
            write.tx.delete_input(app_id, record)
        write.touched = write.removed

    # ------------------------------------------------------ predicted images
    def remember_predicted(self, app_id: str, data: bytes) -> str:
        """Keep a predicted image a while (bounded) so its answer can link it; its content hash."""
        sha = content_hash(data)
        self._recent.put(app_id, sha, data)
        return sha

    def predicted_image(self, app_id: str, sha256: str) -> bytes:
        self._context.sync(app_id)
        data = self._recent.get(app_id, sha256)
        if data is None:
            raise NotFound("image", sha256, "that predicted image is no longer kept (they are kept for an hour)")
        return data
