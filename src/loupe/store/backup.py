"""Online backup and verified restore of the LMDB store (the source of truth).

A backup is LMDB's own copy, compacted, taken in one read transaction: a consistent snapshot of every
write committed before it began, while `loupe serve` (any number of workers) goes on writing. Vector
indexes and compiled backbones are left out: they are caches rebuilt from the store on first use. Next
to the copy, `manifest.json` records its SHA-256, the counts of what it holds, the store schema and
the Loupe version; a restore checks all of them before it writes anything, and refuses a damaged copy,
a store of a newer schema, or a data dir that already holds a store.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import lmdb
import msgspec

from loupe.errors import Conflict, InvalidArgument
from loupe.store.lmdb_store import MAX_DATABASES, SCHEMA_VERSION, Store

MANIFEST = "manifest.json"
DATA_FILE = "data.mdb"


class AppCounts(msgspec.Struct, frozen=True):
    app_id: str
    inputs: int
    models: int
    versions: int


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    format: int = 1
    loupe_version: str
    schema: int
    created_at: float
    sha256: str  # of data.mdb
    bytes: int
    apps: list[AppCounts]
    users: int
    keys: int


def _loupe_version() -> str:
    try:
        return version("loupe")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _counts(store: Store) -> tuple[list[AppCounts], int, int]:
    with store.read() as tx:
        apps = [AppCounts(app_id=app.id, inputs=tx.count_inputs(app.id),
                          models=len(models := list(tx.iter_models(app.id))),
                          versions=sum(sum(1 for _ in tx.iter_versions(app.id, m.id)) for m in models))
                for app in tx.list_apps()]
        return apps, sum(1 for _ in tx.iter_users()), sum(1 for _ in tx.iter_api_keys())


def backup(lmdb_path: Path, dest: Path, map_size: int) -> Manifest:
    """Copy the live store at `lmdb_path` into the new folder `dest`, compacted, with its manifest."""
    if not (lmdb_path / DATA_FILE).exists():
        raise InvalidArgument(f"no Loupe store at {lmdb_path}")
    if dest.exists() and any(dest.iterdir()):
        raise Conflict(f"{dest} is not empty: back up into a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(lmdb_path), readonly=True, max_dbs=MAX_DATABASES, map_size=map_size)
    try:
        env.copy(str(dest), compact=True)  # one read transaction: a consistent snapshot
    finally:
        env.close()
    copy = Store(dest, map_size)  # an older schema is migrated in the copy, never in the live store
    try:
        apps, users, keys = _counts(copy)
        schema = _schema(copy)
    finally:
        copy.close()
    (dest / "lock.mdb").unlink(missing_ok=True)
    data = dest / DATA_FILE
    manifest = Manifest(loupe_version=_loupe_version(), schema=schema, created_at=time.time(), sha256=_sha256(data),
                        bytes=data.stat().st_size, apps=apps, users=users, keys=keys)
    (dest / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
    return manifest


def verify(src: Path) -> Manifest:
    """The backup's manifest, once its copy matches it; InvalidArgument says what does not."""
    try:
        manifest = msgspec.json.decode((src / MANIFEST).read_bytes(), type=Manifest)
    except FileNotFoundError:
        raise InvalidArgument(f"{src} has no {MANIFEST}: not a Loupe backup") from None
    except msgspec.DecodeError as exc:
        raise InvalidArgument(f"{src / MANIFEST} is damaged: {exc}") from None
    if manifest.format != 1 or manifest.schema > SCHEMA_VERSION:
        raise InvalidArgument(f"this backup is of a newer format (schema {manifest.schema}, Loupe "
                              f"{manifest.loupe_version}); this Loupe reads schema {SCHEMA_VERSION} at most: "
                              "upgrade first")
    data = src / DATA_FILE
    if not data.exists() or data.stat().st_size != manifest.bytes or _sha256(data) != manifest.sha256:
        raise InvalidArgument(f"{data} does not match the manifest (size or SHA-256): the backup is damaged")
    return manifest


def restore(src: Path, lmdb_path: Path, map_size: int) -> Manifest:
    """Check the backup in `src`, then make it the store at `lmdb_path` (which must not exist yet) and
    check that it holds what the manifest counts."""
    manifest = verify(src)
    if (lmdb_path / DATA_FILE).exists():
        raise Conflict(f"{lmdb_path.parent} already holds a store: restore into a new data dir")
    lmdb_path.mkdir(parents=True, exist_ok=True)
    partial = lmdb_path / (DATA_FILE + ".partial")
    shutil.copyfile(src / DATA_FILE, partial)
    partial.rename(lmdb_path / DATA_FILE)  # whole or absent
    store = Store(lmdb_path, map_size)
    try:
        apps, users, keys = _counts(store)
    finally:
        store.close()
    if (apps, users, keys) != (manifest.apps, manifest.users, manifest.keys):
        raise InvalidArgument("the restored store does not hold what the manifest counts")
    return manifest


def _schema(store: Store) -> int:
    with store.read() as tx:
        return tx.schema()
