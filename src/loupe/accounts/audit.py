"""Reading an app's audit trail: newest first, filtered by who, what and when, as pages or JSON lines.

The entries themselves are written by the store's write transactions (loupe.store.accounts), in the
transaction of the write they describe.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from loupe.errors import InvalidArgument, NotFound
from loupe.pagination import page_window
from loupe.store import Store
from loupe.store.records import AuditEntry, Resource

MAX_SCANNED = 200_000  # entries one query may read (above the default retention of 100k per app)
BATCH = 500


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True):
    actor: str = ""  # a user name or key id ("" = anyone)
    resource: Resource | None = None
    since: float = 0.0  # unix seconds, inclusive
    until: float = 0.0  # exclusive; 0 = now

    def matches(self, entry: AuditEntry) -> bool:
        if self.actor and entry.actor.id != self.actor:
            return False
        if self.resource is not None and not any(c.resource is self.resource for c in entry.changes) \
                and not any(name.startswith(f"{self.resource.value}.") for name in entry.counts):
            return False
        return entry.at >= self.since and (not self.until or entry.at < self.until)


def parse_resource(text: str) -> Resource | None:
    if not text:
        return None
    try:
        return Resource(text)
    except ValueError:
        raise InvalidArgument(f"resource must be one of {', '.join(r.value for r in Resource)}, got {text!r}") \
            from None


class AuditLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    def entries(self, app_id: str, query: AuditQuery) -> Iterator[AuditEntry]:
        """Every matching entry, newest first, read in batches (a short read transaction each, so an
        export streaming to a slow client holds no LMDB reader); stops at `since`."""
        with self._store.read() as tx:
            if tx.get_app(app_id) is None:
                raise NotFound("app", app_id)
            first, end = tx.audit_bounds(app_id)
        first = max(first, end - MAX_SCANNED, 1)
        seq = end - 1
        while seq >= first:
            with self._store.read() as tx:
                batch = [e for s in range(seq, max(first, seq - BATCH) - 1, -1)
                         if (e := tx.get_audit(app_id, s)) is not None]
            seq -= BATCH + 1
            for entry in batch:
                if entry.at < query.since:
                    return
                if query.matches(entry):
                    yield entry

    def page(self, app_id: str, query: AuditQuery, page: int = 1, per_page: int = 100) -> list[AuditEntry]:
        offset, limit = page_window(page, per_page)
        out = []
        for i, entry in enumerate(self.entries(app_id, query)):
            if i >= offset + limit:
                break
            if i >= offset:
                out.append(entry)
        return out

    def json_lines(self, app_id: str, query: AuditQuery) -> Iterator[bytes]:
        """The export: one JSON object per line, newest first."""
        for entry in self.entries(app_id, query):
            yield msgspec.json.encode(entry) + b"\n"
