"""Sessions of the page: a random cookie whose hash keys a revocable LMDB record, with idle and absolute
expiry, and a CSRF token that writes made with the cookie must send back. Failed sign-ins are throttled."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

import msgspec

from loupe.config import AccountLimits
from loupe.errors import Busy
from loupe.store import Store, WriteTxn
from loupe.store.records import Session

TOUCH_EVERY_SECONDS = 60.0  # last-seen is written at most this often per session
MAX_TRACKED = 10_000  # names and addresses the throttle remembers; the oldest are forgotten first


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class OpenedSession(msgspec.Struct, frozen=True):
    token: str  # the cookie's value: exists only in this answer and the browser
    session: Session


class Sessions:
    def __init__(self, store: Store, limits: AccountLimits) -> None:
        self._store = store
        self._limits = limits

    def open(self, user: str, address: str = "") -> OpenedSession:
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(digest=_digest(token), user=user, csrf_token=secrets.token_urlsafe(24), created_at=now,
                          last_seen_at=now, address=address[:64])
        with self._store.write() as tx:
            self._drop_expired(tx, now)
            tx.put_session(session)
        return OpenedSession(token, session)

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.last_seen_at > self._limits.session_idle_seconds
                or now - session.created_at > self._limits.session_max_seconds)

    def _drop_expired(self, tx: WriteTxn, now: float, limit: int = 32) -> None:
        """Sign-ins sweep a few expired records, so abandoned sessions do not pile up."""
        for session in [s for s in tx.iter_sessions() if self._expired(s, now)][:limit]:
            tx.delete_session(session.digest)

    def check(self, token: str) -> Session | None:
        """The live session of this cookie, or None (unknown, revoked or expired). Notes the use."""
        if not token or len(token) > 256:
            return None
        digest = _digest(token)
        with self._store.read() as tx:
            session = tx.get_session(digest)
        if session is None or not hmac.compare_digest(session.digest, digest):
            return None
        now = time.time()
        if self._expired(session, now):
            with self._store.write() as tx:
                tx.delete_session(digest)
            return None
        if now - session.last_seen_at >= TOUCH_EVERY_SECONDS:
            with self._store.write() as tx:
                if tx.get_session(digest) is not None:
                    tx.put_session(msgspec.structs.replace(session, last_seen_at=now))
        return session

    def close(self, token: str) -> None:
        with self._store.write() as tx:
            tx.delete_session(_digest(token))


class LoginThrottle:
    """Failed sign-ins per user name and per address within a sliding window; beyond the limits, 429
    (checked before any password is hashed). In this process's memory: a restart forgets it."""

    def __init__(self, limits: AccountLimits) -> None:
        self._limits = limits
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] > self._limits.login_window_seconds:
            times.popleft()
        return times

    def check(self, user: str, address: str) -> None:
        now = time.time()
        with self._lock:
            for key, limit in ((f"u:{user}", self._limits.login_failures_per_user),
                               (f"a:{address}", self._limits.login_failures_per_address)):
                times = self._recent(key, now)
                if len(times) >= limit:
                    wait = int(self._limits.login_window_seconds - (now - times[0])) + 1
                    raise Busy("too many failed sign-ins: wait before trying again", retry_after=max(1, wait))

    def failed(self, user: str, address: str) -> None:
        now = time.time()
        with self._lock:
            for key in (f"u:{user}", f"a:{address}"):
                self._recent(key, now)
                self._failures.setdefault(key, deque()).append(now)
                self._failures[key] = self._failures.pop(key)  # most recent last: forgotten last
            while len(self._failures) > MAX_TRACKED:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(f"u:{user}", None)
