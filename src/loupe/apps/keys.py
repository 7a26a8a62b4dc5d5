"""API keys: shown once at creation, stored only as a hash; each key belongs to one app and one scope."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from enum import Enum

import msgspec

from loupe.errors import InvalidArgument, NotFound
from loupe.store import Store

_PREFIX = "lk_"


class Scope(str, Enum):
    ALL = "all"  # read and write everything of the app
    PREDICT = "predict"  # predict and search only


class KeyRecord(msgspec.Struct, kw_only=True):
    digest: str  # sha256 of the key
    app_id: str
    scope: Scope
    created_at: float
    hint: str  # the key's first characters, to tell keys apart in listings


_DUMMY = msgspec.msgpack.encode(KeyRecord(digest="0" * 64, app_id="-", scope=Scope.PREDICT, created_at=0.0,
                                          hint="lk_0000"))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKeys:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, app_id: str, scope: Scope | str = Scope.ALL) -> str:
        """A new key for the app; the only time the plain key exists is in this return value."""
        try:
            scope = Scope(scope)
        except ValueError:
            raise InvalidArgument(f"scope must be 'all' or 'predict', got {scope!r}") from None
        key = _PREFIX + secrets.token_urlsafe(32)
        record = KeyRecord(digest=_digest(key), app_id=app_id, scope=scope, created_at=time.time(), hint=key[:7])
        with self._store.write() as tx:
            if tx.get_app(app_id) is None:
                raise NotFound("app", app_id)
            tx.put_api_key(record.digest, msgspec.msgpack.encode(record))
        return key

    def verify(self, key: str) -> KeyRecord | None:
        """The key's record, or None. Looked up by hash, then compared in constant time, so a wrong
        key costs the same as a right one and timing says nothing about stored keys."""
        digest = _digest(key)
        with self._store.read() as tx:
            raw = tx.get_api_key(digest)
        # A miss decodes a record of the same shape, so it costs what a hit costs.
        record = msgspec.msgpack.decode(raw if raw is not None else _DUMMY, type=KeyRecord)
        if hmac.compare_digest(record.digest, digest) and raw is not None:
            return record
        return None

    def list(self, app_id: str) -> list[KeyRecord]:
        with self._store.read() as tx:
            records = [msgspec.msgpack.decode(v, type=KeyRecord) for v in tx.iter_api_keys()]
        return [r for r in records if r.app_id == app_id]

    def revoke(self, app_id: str, key_or_hint: str) -> KeyRecord:
        """Revoke one key of the app, named by the key itself or by its hint (first characters)."""
        records = self.list(app_id)
        exact = [r for r in records if hmac.compare_digest(r.digest, _digest(key_or_hint))]
        found = exact or [r for r in records if r.hint.startswith(key_or_hint) or key_or_hint.startswith(r.hint)]
        if not found:
            raise NotFound("key", key_or_hint, f"app {app_id!r} has no key {key_or_hint!r}")
        if len(found) > 1:
            raise InvalidArgument(f"{key_or_hint!r} matches {len(found)} keys of app {app_id!r}: give the whole key")
        with self._store.write() as tx:
            tx.delete_api_key(found[0].digest)
        return found[0]

    def revoke_app(self, app_id: str) -> None:
        records = self.list(app_id)
        with self._store.write() as tx:
            for record in records:
                tx.delete_api_key(record.digest)
