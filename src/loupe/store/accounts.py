"""People, keys and the audit trail in LMDB: the reads and writes the transactions gain from this mixin.

Audit entries are written by the write transaction itself: its mutating methods note each change of an
app's data (`_note`), and `Store.write` appends one entry per app just before the commit, so an entry and
its write are one LMDB transaction (kill -9 leaves both or neither).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from loupe.store import keys as K
from loupe.store.records import (
    SYSTEM,
    Actor,
    ActorKind,
    AuditEntry,
    AuditOp,
    Change,
    Input,
    KeyRecord,
    Labels,
    Member,
    Model,
    ModelVersion,
    Resource,
    Session,
    User,
    VersionStatus,
)

ACCOUNT_DATABASES = ("users", "members", "memberships", "sessions", "audit")
MAX_AUDIT_CHANGES = 100  # an entry lists this many changes; `counts` counts them all
PRUNE_PER_WRITE = 8  # old entries dropped per write beyond the retention: bounded work, converges


class AuditRetention(msgspec.Struct, frozen=True):
    max_entries: int = 100_000  # per app
    max_age_seconds: float = 365 * 86400.0


def labels_of(record: Input) -> Labels:
    return Labels(list(record.concepts), list(record.not_concepts))


def u64(raw: bytes | None) -> int:
    return 0 if raw is None else struct.unpack(">Q", raw)[0]


class AccountReads:
    """Mixed into ReadTxn (which provides `_get` and `iter_prefix`)."""

    _get: Any
    iter_prefix: Any

    def get_api_key(self, digest: str) -> KeyRecord | None:
        raw = self._get("api_keys", digest.encode())
        return None if raw is None else msgspec.msgpack.decode(raw, type=KeyRecord)

    def iter_api_keys(self) -> Iterator[KeyRecord]:
        for _key, value in self.iter_prefix("api_keys", b""):
            yield msgspec.msgpack.decode(value, type=KeyRecord)

    def get_user(self, name: str) -> User | None:
        raw = self._get("users", K.join(name))
        return None if raw is None else msgspec.msgpack.decode(raw, type=User)

    def iter_users(self) -> Iterator[User]:
        for _key, value in self.iter_prefix("users", b""):
            yield msgspec.msgpack.decode(value, type=User)

    def get_member(self, app_id: str, user: str) -> Member | None:
        raw = self._get("members", K.join(app_id, user))
        return None if raw is None else msgspec.msgpack.decode(raw, type=Member)

    def iter_members(self, app_id: str) -> Iterator[Member]:
        for _key, value in self.iter_prefix("members", K.prefix(app_id)):
            yield msgspec.msgpack.decode(value, type=Member)

    def memberships(self, user: str) -> list[Member]:
        """The user's memberships, one per app (reverse index: no scan of every app)."""
        found = []
        for key, _value in self.iter_prefix("memberships", K.prefix(user)):
            member = self.get_member(K.last_part(key), user)
            if member is not None:
                found.append(member)
        return found

    def get_session(self, digest: str) -> Session | None:
        raw = self._get("sessions", digest.encode())
        return None if raw is None else msgspec.msgpack.decode(raw, type=Session)

    def iter_sessions(self) -> Iterator[Session]:
        for _key, value in self.iter_prefix("sessions", b""):
            yield msgspec.msgpack.decode(value, type=Session)

    def audit_bounds(self, app_id: str) -> tuple[int, int]:
        """[first, next) sequence numbers of the app's audit entries."""
        return u64(self._get("counters", K.join(app_id, "audit_first"))), \
            u64(self._get("counters", K.join(app_id, "audit_next")))

    def get_audit(self, app_id: str, seq: int) -> AuditEntry | None:
        raw = self._get("audit", K.join(app_id, K.seq_bytes(seq)))
        return None if raw is None else msgspec.msgpack.decode(raw, type=AuditEntry)


class AccountWrites(AccountReads):
    """Mixed into WriteTxn (which provides `_put` and `_delete`)."""

    _put: Any
    _delete: Any
    actor: Actor
    _changes: dict[str, list[Change]]
    _dropped: set[str]

    def _note(self, app_id: str, change: Change) -> None:
        if app_id:
            self._changes.setdefault(app_id, []).append(change)

    def note_app_created(self, app_id: str) -> None:
        self._note(app_id, Change(op=AuditOp.CREATE, resource=Resource.APP, id=app_id))

    def _note_input(self, app_id: str, record: Input, previous: Input | None) -> None:
        after = labels_of(record)
        before = labels_of(previous) if previous is not None else None
        self._note(app_id, Change(op=AuditOp.UPDATE if previous is not None else AuditOp.CREATE,
                                  resource=Resource.INPUT, id=record.id, before=before, after=after))

    def _note_put(self, app_id: str, resource: Resource, item_id: str, existed: bool, detail: str = "") -> None:
        self._note(app_id, Change(op=AuditOp.UPDATE if existed else AuditOp.CREATE, resource=resource,
                                  id=item_id, detail=detail))

    def _note_delete(self, app_id: str, resource: Resource, item_id: str, detail: str = "",
                     before: Labels | None = None) -> None:
        self._note(app_id, Change(op=AuditOp.DELETE, resource=resource, id=item_id, detail=detail, before=before))

    def _note_model(self, app_id: str, model: Model) -> None:
        old = self.get_model(app_id, model.id)  # type: ignore[attr-defined]
        if old is None or msgspec.structs.replace(old, next_version=model.next_version) != model:
            self._note_put(app_id, Resource.MODEL, model.id, old is not None)  # not a train's version count

    def _note_version(self, app_id: str, version: ModelVersion) -> None:
        """A version made or changed by someone; of Loupe's own updates only a train's outcome."""
        old = self.get_version(app_id, version.model_id, version.id)  # type: ignore[attr-defined]
        if old is None or self.actor.kind is not ActorKind.SYSTEM or (
                version.status != old.status and version.status in (VersionStatus.TRAINED, VersionStatus.FAILED)):
            self._note_put(app_id, Resource.VERSION, f"{version.model_id}/{version.id}", old is not None,
                           str(version.status))

    # keys
    def put_api_key(self, record: KeyRecord) -> None:
        existed = self._get("api_keys", record.digest.encode()) is not None
        self._put("api_keys", record.digest.encode(), msgspec.msgpack.encode(record))
        self._note_put(record.app_id, Resource.KEY, record.id, existed, record.scope.value)

    def touch_api_key(self, record: KeyRecord, now: float) -> None:
        """Last-used time only: bookkeeping, not a change anyone made (not audited)."""
        self._put("api_keys", record.digest.encode(),
                  msgspec.msgpack.encode(msgspec.structs.replace(record, last_used_at=now)))

    def delete_api_key(self, record: KeyRecord) -> None:
        self._delete("api_keys", record.digest.encode())
        self._note_delete(record.app_id, Resource.KEY, record.id)

    # users and members
    def put_user(self, user: User) -> None:
        self._put("users", K.join(user.name), msgspec.msgpack.encode(user))

    def delete_user(self, name: str) -> None:
        for member in self.memberships(name):
            self.delete_member(member.app_id, name)
        for session in [s for s in self.iter_sessions() if s.user == name]:
            self.delete_session(session.digest)
        for key in [k for k in self.iter_api_keys() if k.user == name]:
            self.delete_api_key(key)
        self._delete("users", K.join(name))

    def put_member(self, member: Member) -> None:
        existed = self.get_member(member.app_id, member.user) is not None
        self._put("members", K.join(member.app_id, member.user), msgspec.msgpack.encode(member))
        self._put("memberships", K.join(member.user, member.app_id), b"")
        self._note_put(member.app_id, Resource.MEMBER, member.user, existed, member.role.value)

    def delete_member(self, app_id: str, user: str) -> None:
        self._delete("members", K.join(app_id, user))
        self._delete("memberships", K.join(user, app_id))
        self._note_delete(app_id, Resource.MEMBER, user)

    # sessions
    def put_session(self, session: Session) -> None:
        self._put("sessions", session.digest.encode(), msgspec.msgpack.encode(session))

    def delete_session(self, digest: str) -> None:
        if self._get("sessions", digest.encode()) is not None:
            self._delete("sessions", digest.encode())

    # the audit trail
    def drop_app_accounts(self, app_id: str) -> None:
        """With the app: its members, keys and audit trail; nothing more is noted for it in this write."""
        for member in list(self.iter_members(app_id)):
            self.delete_member(app_id, member.user)
        for key in [k for k in self.iter_api_keys() if k.app_id == app_id]:
            self.delete_api_key(key)
        for key in [key for key, _ in self.iter_prefix("audit", K.prefix(app_id))]:
            self._delete("audit", key)
        for name in ("audit_first", "audit_next"):
            if self._get("counters", K.join(app_id, name)) is not None:
                self._delete("counters", K.join(app_id, name))
        self._dropped.add(app_id)

    def write_audit(self, retention: AuditRetention, now: float | None = None) -> None:
        """One entry per app this transaction changed; then at most PRUNE_PER_WRITE entries past the
        retention go. Called by Store.write just before the commit."""
        now = time.time() if now is None else now
        for app_id, changes in self._changes.items():
            if app_id in self._dropped or self._get("apps", K.join(app_id)) is None:
                continue
            counts: dict[str, int] = {}
            for change in changes:
                name = f"{change.resource.value}.{change.op.value}"
                counts[name] = counts.get(name, 0) + 1
            first, next_seq = self.audit_bounds(app_id)
            next_seq = max(next_seq, 1)
            entry = AuditEntry(seq=next_seq, at=now, actor=self.actor or SYSTEM,
                               changes=changes[:MAX_AUDIT_CHANGES], counts=counts)
            self._put("audit", K.join(app_id, K.seq_bytes(next_seq)), msgspec.msgpack.encode(entry))
            next_seq += 1
            first = max(first, 1)
            cutoff = now - retention.max_age_seconds
            for _ in range(PRUNE_PER_WRITE):
                if next_seq - first <= retention.max_entries:
                    raw = self._get("audit", K.join(app_id, K.seq_bytes(first)))
                    if raw is None or msgspec.msgpack.decode(raw, type=AuditEntry).at >= cutoff:
                        break
                self._delete("audit", K.join(app_id, K.seq_bytes(first)))
                first += 1
            self._put("counters", K.join(app_id, "audit_first"), struct.pack(">Q", first))
            self._put("counters", K.join(app_id, "audit_next"), struct.pack(">Q", next_seq))
        self._changes.clear()
