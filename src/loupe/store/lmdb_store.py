"""LMDB environment and typed transactions. One write transaction per request; commit = acknowledged."""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgspec
import numpy as np

from loupe.errors import StorageFull, StoreTooNew
from loupe.store import geo
from loupe.store import keys as K
from loupe.store.accounts import ACCOUNT_DATABASES, AccountReads, AccountWrites, AuditRetention, labels_of, u64
from loupe.store.jobs import JOB_DATABASES, JobReads, JobWrites
from loupe.store.provenance import ProvenanceReads, ProvenanceWrites
from loupe.store.records import SYSTEM, Actor, App, Concept, Input, Model, ModelVersion, Resource, TrainLease
from loupe.store.secondary import index_entries, url_key
from loupe.store.telemetry import DismissalReads, DismissalWrites, TelemetryReads, TelemetryWrites

T = TypeVar("T", bound=msgspec.Struct)

_DATABASES = ("apps", "inputs", "input_order", "labels", "concepts", "embeddings", "blobs", "blob_refs",
              "models", "versions", "feedback", "api_keys", "workflows", "thumbnails", "counters",
              "feature_norms", "dismissals", "train_leases", "geo", "sources", *ACCOUNT_DATABASES, *JOB_DATABASES)
# Schema 2 added the geo and source-URL indexes; a store written before them is indexed once at open.
SCHEMA_VERSION = 2
MAX_DATABASES = 32


class Store:
    def __init__(self, path: Path, map_size: int, audit: AuditRetention | None = None) -> None:
        self.audit = audit or AuditRetention()
        self.closed = False
        path.mkdir(parents=True, exist_ok=True)
        # sync/metasync on: acknowledged writes survive kill -9 and power loss; max_readers: threaded server.
        self.env = lmdb.open(str(path), map_size=map_size, max_dbs=MAX_DATABASES, max_readers=256,
                             sync=True, metasync=True, readahead=False)
        self._dbs = {name: self.env.open_db(name.encode()) for name in _DATABASES}
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older store's secondary indexes level with its records in one transaction (current: a read)."""
        with self.read() as tx:
            found = tx.schema()
        if found > SCHEMA_VERSION:  # never "migrate" what a newer Loupe wrote
            raise StoreTooNew(f"this store has schema {found}, written by a newer Loupe; this one reads schema "
                              f"{SCHEMA_VERSION} at most: upgrade Loupe (nothing was changed)")
        if found == SCHEMA_VERSION:
            return
        with self.write(audited=False) as tx:  # re-indexing changes nothing anyone made
            if tx.schema() >= SCHEMA_VERSION:  # another process migrated it meanwhile
                return
            for app in tx.list_apps():
                for record in list(tx.iter_inputs(app.id)):
                    tx.put_input(app.id, record)  # no previous: every index entry is (re)written
            tx._put("counters", b"schema", struct.pack(">Q", SCHEMA_VERSION))

    def db(self, name: str) -> lmdb._Database:
        if name not in self._dbs:
            self._dbs[name] = self.env.open_db(name.encode())
        return self._dbs[name]

    @contextmanager
    def read(self) -> Iterator[ReadTxn]:
        with self.env.begin(buffers=False) as txn:
            yield ReadTxn(self, txn)

    @contextmanager
    def write(self, by: Actor = SYSTEM, *, audited: bool = True) -> Iterator[WriteTxn]:
        """Commits when the block ends normally; any exception aborts, leaving nothing behind. A full
        disk or map is StorageFull (507): the write is refused whole and reads go on working. The
        changes it made to apps are audited as done `by` that actor, in the same transaction."""
        try:
            with self.env.begin(write=True) as txn:
                tx = WriteTxn(self, txn, by)
                yield tx
                if audited:
                    tx.write_audit(self.audit)
        except lmdb.MapFullError:
            raise StorageFull("storage full: the store reached its size limit (lmdb_map_size); nothing was "
                              "written") from None
        except lmdb.Error as exc:
            if "No space left" in str(exc) or getattr(exc, "errno", None) == errno.ENOSPC:
                raise StorageFull("storage full: no space left on the data disk; nothing was written") from None
            raise

    def close(self) -> None:
        self.closed = True  # background threads (the job reaper) stop instead of failing on a closed env
        self.env.close()


def _decode(data: bytes | None, kind: type[T]) -> T | None:
    return None if data is None else msgspec.msgpack.decode(data, type=kind)


class ReadTxn(AccountReads, JobReads, ProvenanceReads, TelemetryReads, DismissalReads):
    def __init__(self, store: Store, txn: lmdb.Transaction) -> None:
        self.store = store
        # Any: lmdb's stubs say bytes | memoryview, but transactions begun with buffers=False give bytes.
        self.txn: Any = txn

    def _get(self, db: str, key: bytes) -> bytes | None:
        return self.txn.get(key, db=self.store.db(db))

    def iter_prefix(self, db: str, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Keys starting with `prefix` (which ends in SEP), in key order or reversed."""
        cur = self.txn.cursor(db=self.store.db(db))
        if reverse:
            # Every key with the prefix sorts below prefix-with-its-final-NUL-raised-to-\x01.
            positioned = cur.prev() if cur.set_range(prefix[:-1] + b"\x01") else cur.last()
            walk = cur.iterprev
        else:
            positioned = cur.set_range(prefix)
            walk = cur.iternext
        if not positioned:
            return
        for key, value in walk():
            if not key.startswith(prefix):
                return
            yield key, value

    def schema(self) -> int:
        found = self._get("counters", b"schema")
        return struct.unpack(">Q", found)[0] if found else 1

    # apps
    def get_app(self, app_id: str) -> App | None:
        return _decode(self._get("apps", K.join(app_id)), App)

    def list_apps(self) -> list[App]:
        cur = self.txn.cursor(db=self.store.db("apps"))
        return [msgspec.msgpack.decode(v, type=App) for _, v in cur]

    # inputs
    def get_input(self, app_id: str, input_id: str) -> Input | None:
        return _decode(self._get("inputs", K.join(app_id, input_id)), Input)

    def input_id_at(self, app_id: str, seq: int) -> str | None:
        raw = self._get("input_order", K.join(app_id, K.seq_bytes(seq)))
        return None if raw is None else raw.decode("utf-8")

    def input_sha_at(self, app_id: str, seq: int) -> str | None:
        """The content hash of the input with this sequence number (what its vector is stored under)."""
        input_id = self.input_id_at(app_id, seq)
        record = self.get_input(app_id, input_id) if input_id is not None else None
        return None if record is None else record.sha256

    def iter_inputs(self, app_id: str, *, newest_first: bool = True) -> Iterator[Input]:
        for _, raw_id in self.iter_prefix("input_order", K.prefix(app_id), reverse=newest_first):
            record = self.get_input(app_id, raw_id.decode("utf-8"))
            if record is not None:
                yield record

    def input_seqs(self, app_id: str) -> np.ndarray:
        """Every input's sequence number (= vector-index id), ascending."""
        return np.asarray([K.seq_from(k) for k, _ in self.iter_prefix("input_order", K.prefix(app_id))], np.int64)

    def count_inputs(self, app_id: str) -> int:
        return sum(1 for _ in self.iter_prefix("input_order", K.prefix(app_id)))

    def source_seqs(self, app_id: str, url: str) -> np.ndarray:
        """Inputs added from this URL (Clarifai's search by original URL)."""
        found = [K.seq_from(k) for k, _ in self.iter_prefix("sources", K.prefix(app_id, url_key(url)))]
        return np.asarray(found, dtype=np.int64)

    def geo_seqs(self, app_id: str, query: geo.GeoQuery) -> np.ndarray:
        """Inputs whose geo point lies within the query: Z-order key ranges, then an exact check of each."""
        prefix = K.prefix(app_id)
        cur = self.txn.cursor(db=self.store.db("geo"))
        seqs: list[int] = []
        lats: list[float] = []
        lons: list[float] = []
        for start, stop in geo.key_ranges(query):
            low, high = prefix + start, prefix + stop
            if not cur.set_range(low):
                continue
            for key, value in cur.iternext():
                if key >= high or not key.startswith(prefix):
                    break
                lat, lon = geo.unpack_point(value)
                seqs.append(K.seq_from(key))
                lats.append(lat)
                lons.append(lon)
        if not seqs:
            return np.zeros(0, np.int64)
        keep = geo.matches(query, np.asarray(lats), np.asarray(lons))
        return np.unique(np.asarray(seqs, np.int64)[keep])

    def labelled_seqs(self, app_id: str, concept_id: str, positive: bool = True) -> np.ndarray:
        sign = K.POSITIVE if positive else K.NEGATIVE
        found = [K.seq_from(k) for k, _ in
                 self.iter_prefix("labels", K.prefix(app_id, concept_id, sign))]
        return np.asarray(found, dtype=np.int64)

    # concepts
    def get_concept(self, app_id: str, concept_id: str) -> Concept | None:
        return _decode(self._get("concepts", K.join(app_id, concept_id)), Concept)

    def iter_concepts(self, app_id: str) -> Iterator[Concept]:
        for _, value in self.iter_prefix("concepts", K.prefix(app_id)):
            yield msgspec.msgpack.decode(value, type=Concept)

    # embeddings (shared by every app with the same backbone: an image is embedded once)
    def get_embedding(self, backbone_id: str, sha256: str) -> np.ndarray | None:
        raw = self._get("embeddings", K.join(backbone_id, sha256))
        return None if raw is None else np.frombuffer(raw, dtype=np.float32)

    def embeddings_into(self, backbone_id: str, hashes: Sequence[str | None], out: np.ndarray) -> np.ndarray:
        """Many stored vectors into `out` [len(hashes), dim] (rows not found or None left as they are);
        returns which were found. One lookup each, no per-call overhead: a train reads 50,000."""
        db = self.store.db("embeddings")
        prefix = backbone_id.encode("utf-8") + K.SEP
        get = self.txn.get
        found = np.zeros(len(hashes), bool)
        dim = out.shape[1]
        for row, sha in enumerate(hashes):
            if sha is None:
                continue
            raw = get(prefix + sha.encode("ascii"), db=db)
            if raw is not None and len(raw) == 4 * dim:
                out[row] = np.frombuffer(raw, dtype=np.float32)
                found[row] = True
        return found

    def get_feature_norm(self, backbone_id: str, sha256: str) -> float | None:
        """The L2 norm of the image's features before normalising (the ImageNet head needs it)."""
        raw = self._get("feature_norms", K.join(backbone_id, sha256))
        return None if raw is None else struct.unpack("<f", raw)[0]

    def get_blob(self, sha256: str) -> bytes | None:
        return self._get("blobs", sha256.encode())

    def get_thumbnail(self, sha256: str) -> bytes | None:
        return self._get("thumbnails", sha256.encode())

    def get_train_lease(self, app_id: str, model_id: str) -> TrainLease | None:
        return _decode(self._get("train_leases", K.join(app_id, model_id)), TrainLease)

    def feedback_count(self, app_id: str) -> int:
        return u64(self._get("counters", K.join(app_id, "feedback")))

    def get_workflow(self, app_id: str, workflow_id: str) -> bytes | None:
        return self._get("workflows", K.join(app_id, workflow_id))

    def workflow_ids(self, app_id: str) -> list[str]:
        return [K.last_part(k) for k, _ in self.iter_prefix("workflows", K.prefix(app_id))]

    def iter_workflows(self, app_id: str) -> Iterator[bytes]:
        for _, value in self.iter_prefix("workflows", K.prefix(app_id)):
            yield value

    # models and their versions
    def get_model(self, app_id: str, model_id: str) -> Model | None:
        return _decode(self._get("models", K.join(app_id, model_id)), Model)

    def iter_models(self, app_id: str) -> Iterator[Model]:
        for _, value in self.iter_prefix("models", K.prefix(app_id)):
            yield msgspec.msgpack.decode(value, type=Model)

    def iter_versions(self, app_id: str, model_id: str, *, newest_first: bool = True) -> Iterator[ModelVersion]:
        """Versions keyed by sequence number, so key order is creation order."""
        for _, value in self.iter_prefix("versions", K.prefix(app_id, model_id), reverse=newest_first):
            yield msgspec.msgpack.decode(value, type=ModelVersion)

    def get_version(self, app_id: str, model_id: str, version_id: str) -> ModelVersion | None:
        for version in self.iter_versions(app_id, model_id):
            if version.id == version_id:
                return version
        return None


class WriteTxn(ReadTxn, AccountWrites, JobWrites, ProvenanceWrites, TelemetryWrites, DismissalWrites):
    def __init__(self, store: Store, txn: lmdb.Transaction, actor: Actor = SYSTEM) -> None:
        super().__init__(store, txn)
        self.actor = actor
        self._changes = {}  # app id -> the changes this transaction made to it, for its audit entry
        self._dropped = set()  # apps deleted in this transaction: nothing to audit for them

    def _put(self, db: str, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self.store.db(db))

    def _delete(self, db: str, key: bytes) -> None:
        self.txn.delete(key, db=self.store.db(db))

    def put_app(self, app: App) -> None:
        self._put("apps", K.join(app.id), msgspec.msgpack.encode(app))

    def put_input(self, app_id: str, record: Input, previous: Input | None = None) -> None:
        """Write an input and keep the order, label, geo and source indexes in step with it."""
        self._note_input(app_id, record, previous)
        self._put("inputs", K.join(app_id, record.id), msgspec.msgpack.encode(record))
        self._put("input_order", K.join(app_id, K.seq_bytes(record.seq)), record.id.encode("utf-8"))
        before = index_entries(app_id, previous) if previous is not None else {}
        for db, new in index_entries(app_id, record).items():
            old = before.get(db, {})
            for key in old.keys() - new.keys():
                self._delete(db, key)
            for key, value in new.items():
                if old.get(key) != value:
                    self._put(db, key, value)

    def delete_input(self, app_id: str, record: Input) -> None:
        self._note_delete(app_id, Resource.INPUT, record.id, before=labels_of(record))
        self._delete("inputs", K.join(app_id, record.id))
        self._delete("input_order", K.join(app_id, K.seq_bytes(record.seq)))
        for db, entries in index_entries(app_id, record).items():
            for key in entries:
                self._delete(db, key)
        self.release_blob(record.sha256)

    def delete_app(self, app_id: str) -> None:
        self.drop_app_accounts(app_id)
        self.delete_jobs(app_id)
        self._delete("apps", K.join(app_id))

    def delete_concept(self, app_id: str, concept_id: str) -> None:
        self._note_delete(app_id, Resource.CONCEPT, concept_id)
        self._delete("concepts", K.join(app_id, concept_id))

    def put_thumbnail(self, sha256: str, data: bytes) -> None:
        self._put("thumbnails", sha256.encode(), data)

    def put_workflow(self, app_id: str, workflow_id: str, record: bytes) -> None:
        self._note_put(app_id, Resource.WORKFLOW, workflow_id, self.get_workflow(app_id, workflow_id) is not None)
        self._put("workflows", K.join(app_id, workflow_id), record)

    def delete_workflow(self, app_id: str, workflow_id: str) -> None:
        self._note_delete(app_id, Resource.WORKFLOW, workflow_id)
        self._delete("workflows", K.join(app_id, workflow_id))

    def put_feedback(self, app_id: str, feedback_id: str, record: bytes) -> None:
        self._note_put(app_id, Resource.FEEDBACK, feedback_id, False)
        self._put("feedback", K.join(app_id, feedback_id), record)
        self._put("counters", K.join(app_id, "feedback"), struct.pack(">Q", self.feedback_count(app_id) + 1))

    def put_train_lease(self, app_id: str, model_id: str, lease: TrainLease) -> None:
        self._put("train_leases", K.join(app_id, model_id), msgspec.msgpack.encode(lease))

    def delete_train_lease(self, app_id: str, model_id: str) -> None:
        self._delete("train_leases", K.join(app_id, model_id))

    def delete_feedback(self, app_id: str) -> None:
        keys = [key for key, _ in self.iter_prefix("feedback", K.prefix(app_id))]
        for key in keys:
            self._delete("feedback", key)
        self._delete("counters", K.join(app_id, "feedback"))

    def put_model(self, app_id: str, model: Model) -> None:
        self._note_model(app_id, model)
        self._put("models", K.join(app_id, model.id), msgspec.msgpack.encode(model))
        self._models_changed(app_id)

    def delete_model(self, app_id: str, model_id: str) -> None:
        for version in list(self.iter_versions(app_id, model_id)):
            self.delete_version(app_id, model_id, version)
        self.delete_dismissals(app_id, model_id)
        self.delete_telemetry(app_id, model_id)
        self._note_delete(app_id, Resource.MODEL, model_id)
        self._delete("models", K.join(app_id, model_id))
        self._models_changed(app_id)

    def put_version(self, app_id: str, version: ModelVersion) -> None:
        self._note_version(app_id, version)
        self._put("versions", K.join(app_id, version.model_id, K.seq_bytes(version.seq)),
                  msgspec.msgpack.encode(version))
        self._models_changed(app_id)

    def delete_version(self, app_id: str, model_id: str, version: ModelVersion) -> None:
        self._note_delete(app_id, Resource.VERSION, f"{model_id}/{version.id}")
        self._delete("versions", K.join(app_id, model_id, K.seq_bytes(version.seq)))
        self._models_changed(app_id)

    def _models_changed(self, app_id: str) -> None:
        app = self.get_app(app_id)
        if app is not None:
            self.put_app(msgspec.structs.replace(app, model_generation=app.model_generation + 1))

    def put_concept(self, app_id: str, concept: Concept) -> None:
        self._note_put(app_id, Resource.CONCEPT, concept.id, self.get_concept(app_id, concept.id) is not None)
        self._put("concepts", K.join(app_id, concept.id), msgspec.msgpack.encode(concept))

    def put_embedding(self, backbone_id: str, sha256: str, vector: np.ndarray, norm: float | None = None) -> None:
        self._put("embeddings", K.join(backbone_id, sha256), np.asarray(vector, np.float32).tobytes())
        if norm is not None:
            self._put("feature_norms", K.join(backbone_id, sha256), struct.pack("<f", norm))

    def retain_blob(self, sha256: str, data: bytes) -> None:
        """Keep the original bytes once per content, counting the inputs (of any app) that use them."""
        key = sha256.encode()
        count = u64(self._get("blob_refs", key))
        if count == 0:
            self._put("blobs", key, data)
        self._put("blob_refs", key, struct.pack(">Q", count + 1))

    def release_blob(self, sha256: str) -> None:
        key = sha256.encode()
        count = u64(self._get("blob_refs", key))
        if count <= 1:
            self._delete("blob_refs", key)
            self._delete("blobs", key)
            if self._get("thumbnails", key) is not None:
                self._delete("thumbnails", key)
        else:
            self._put("blob_refs", key, struct.pack(">Q", count - 1))
