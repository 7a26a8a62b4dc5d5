"""API keys and personal access tokens: shown once at creation, stored only as a hash.

An app key belongs to one app and acts with its scope's role there (the 2017 clients send only this).
A personal access token acts as its user, in each of the user's apps with the user's role.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from loupe.errors import InvalidArgument, NotFound
from loupe.store import Store
from loupe.store.records import CLI, Actor, ActorKind, KeyRecord, Scope

APP_KEY_PREFIX = "lk_"
TOKEN_PREFIX = "lp_"
TOUCH_EVERY_SECONDS = 60.0  # last-used is written at most this often per key: one synced commit a minute
MAX_NAME = 100

# A miss is compared with this record, so it costs what a hit costs.
_DUMMY = KeyRecord(digest="0" * 64, created_at=0.0, hint="lk_0000")


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def actor_label(actor: Actor) -> str:
    """How a key's creator is written down: "user:NAME", "key:ID", "cli"."""
    return actor.kind.value if not actor.id else f"{actor.kind.value}:{actor.id}"


APP_KEY_SCOPES = (Scope.ALL, Scope.LABEL, Scope.PREDICT)
TOKEN_SCOPES = (Scope.ALL, Scope.METRICS)


def _scope(asked: Scope | str, allowed: tuple[Scope, ...]) -> Scope:
    try:
        scope = Scope(asked)
    except ValueError:
        scope = None
    if scope not in allowed:
        raise InvalidArgument(f"scope must be one of {', '.join(s.value for s in allowed)}, got {asked!r}")
    return scope


def _checked_name(name: str) -> str:
    name = name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise InvalidArgument(f"a key name has at most {MAX_NAME} printable characters")
    return name


class ApiKeys:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, app_id: str, scope: Scope | str = Scope.ALL, *, name: str = "", by: Actor = CLI) -> str:
        """A new key for the app; the only time the plain key exists is in this return value."""
        return self.issue(app_id, scope, name=name, by=by)[0]

    def issue(self, app_id: str, scope: Scope | str = Scope.ALL, *, name: str = "",
              by: Actor = CLI) -> tuple[str, KeyRecord]:
        """A new key for the app and its record."""
        scope = _scope(scope, APP_KEY_SCOPES)
        return self._store_new(APP_KEY_PREFIX, by, name, app_id=app_id, scope=scope)

    def create_token(self, user: str, *, name: str = "", by: Actor = CLI,
                     scope: Scope | str = Scope.ALL) -> tuple[str, KeyRecord]:
        """A personal access token of the user: it acts with the user's roles (scope all), or reads only
        the server's metrics (scope metrics; the user must be a server admin when it is used)."""
        return self._store_new(TOKEN_PREFIX, by, name, user=user, scope=_scope(scope, TOKEN_SCOPES))

    def _store_new(self, prefix: str, by: Actor, name: str, *, app_id: str = "", user: str = "",
                   scope: Scope = Scope.ALL) -> tuple[str, KeyRecord]:
        """256 random bits; only the hash is stored. The app (or the user) must exist."""
        key = prefix + secrets.token_urlsafe(32)
        record = KeyRecord(digest=digest_of(key), app_id=app_id, user=user, scope=scope, created_at=time.time(),
                           hint=key[:7], name=_checked_name(name), created_by=actor_label(by))
        with self._store.write(by) as tx:
            if app_id and tx.get_app(app_id) is None:
                raise NotFound("app", app_id)
            if user and tx.get_user(user) is None:
                raise NotFound("user", user)
            tx.put_api_key(record)
        return key, record

    def verify(self, key: str) -> KeyRecord | None:
        """The key's record, or None. Looked up by hash, then compared in constant time, so a wrong
        key costs the same as a right one and timing says nothing about stored keys. Notes the use
        (at most once a minute per key)."""
        digest = digest_of(key)
        with self._store.read() as tx:
            found = tx.get_api_key(digest)
        record = found or _DUMMY
        if not (hmac.compare_digest(record.digest, digest) and found is not None):
            return None
        now = time.time()
        if now - record.last_used_at >= TOUCH_EVERY_SECONDS:
            with self._store.write() as tx:
                current = tx.get_api_key(digest)
                if current is not None:  # revoked meanwhile: nothing to note
                    tx.touch_api_key(current, now)
        return record

    def of_app(self, app_id: str) -> list[KeyRecord]:
        with self._store.read() as tx:
            return sorted((r for r in tx.iter_api_keys() if r.app_id == app_id and not r.user),
                          key=lambda r: r.created_at)

    def tokens(self, user: str) -> list[KeyRecord]:
        with self._store.read() as tx:
            return sorted((r for r in tx.iter_api_keys() if r.user == user), key=lambda r: r.created_at)

    def revoke(self, app_id: str, key_or_hint: str, *, by: Actor = CLI) -> KeyRecord:
        """Revoke one key of the app, named by its id, the key itself or its hint (first characters)."""
        records = self.of_app(app_id)
        exact = [r for r in records if r.id == key_or_hint or hmac.compare_digest(r.digest, digest_of(key_or_hint))]
        found = exact or [r for r in records if r.hint.startswith(key_or_hint) or key_or_hint.startswith(r.hint)]
        if not found:
            raise NotFound("key", key_or_hint, f"app {app_id!r} has no key {key_or_hint!r}")
        if len(found) > 1:
            raise InvalidArgument(f"{key_or_hint!r} matches {len(found)} keys of app {app_id!r}: give its id")
        return self._delete(found[0], by)

    def revoke_token(self, user: str, token_id: str, *, by: Actor) -> KeyRecord:
        found = [r for r in self.tokens(user) if r.id == token_id]
        if not found:
            raise NotFound("token", token_id)
        return self._delete(found[0], by)

    def _delete(self, record: KeyRecord, by: Actor) -> KeyRecord:
        with self._store.write(by) as tx:
            if tx.get_api_key(record.digest) is not None:
                tx.delete_api_key(record)
        return record


def key_actor(record: KeyRecord) -> Actor:
    """Who a key's writes are recorded as: its user for a token, else the key itself."""
    if record.user:
        return Actor(kind=ActorKind.USER, id=record.user, via=f"token:{record.id}")
    return Actor(kind=ActorKind.KEY, id=record.id)
