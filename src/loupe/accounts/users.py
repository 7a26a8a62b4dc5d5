"""Users: names with argon2id password hashes (argon2-cffi); a server admin sees every app."""

from __future__ import annotations

import threading
import time

import argon2

from loupe.errors import Conflict, InvalidArgument, NotFound
from loupe.ids import check_id
from loupe.store import Store
from loupe.store.records import CLI, Actor, User

MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # hashing time grows with length: a client may not send megabytes
# argon2-cffi's defaults (RFC 9106 low-memory profile: 3 passes over 64 MiB) take ~50-100 ms here; at
# most this many hashes run at once, so concurrent sign-ins cannot take the memory (64 MiB each).
CONCURRENT_HASHES = 2


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidArgument(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


class Users:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._hasher = argon2.PasswordHasher()
        self._hashing = threading.BoundedSemaphore(CONCURRENT_HASHES)
        # Verified when the user does not exist: an unknown name costs what a known one does.
        self._dummy = self._hasher.hash("not a password of anyone")

    def _hash(self, password: str) -> str:
        with self._hashing:
            return self._hasher.hash(password)

    def create(self, name: str, password: str, *, admin: bool = False, by: Actor = CLI) -> User:
        check_id("user", name)
        now = time.time()
        user = User(name=name, password_hash=self._hash(check_password(password)), admin=admin, created_at=now,
                    password_changed_at=now)
        with self._store.write(by) as tx:
            if tx.get_user(name) is not None:
                raise Conflict(f"user {name!r} already exists")
            tx.put_user(user)
        return user

    def get(self, name: str) -> User:
        with self._store.read() as tx:
            user = tx.get_user(name)
        if user is None:
            raise NotFound("user", name)
        return user

    def all(self) -> list[User]:
        with self._store.read() as tx:
            return list(tx.iter_users())

    def any_admin(self) -> bool:
        return any(u.admin for u in self.all())

    def set_password(self, name: str, password: str, *, by: Actor = CLI) -> None:
        """A new password; the user's sessions end (a stolen cookie dies with the old password)."""
        digest = self._hash(check_password(password))
        with self._store.write(by) as tx:
            user = tx.get_user(name)
            if user is None:
                raise NotFound("user", name)
            tx.put_user(User(name=user.name, password_hash=digest, admin=user.admin, created_at=user.created_at,
                             password_changed_at=time.time()))
            for session in [s for s in tx.iter_sessions() if s.user == name]:
                tx.delete_session(session.digest)

    def delete(self, name: str, *, by: Actor = CLI) -> None:
        """The user, their memberships, sessions and tokens (their apps stay, with their other members)."""
        with self._store.write(by) as tx:
            if tx.get_user(name) is None:
                raise NotFound("user", name)
            tx.delete_user(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is theirs. Unknown names verify a dummy hash: the same cost."""
        with self._store.read() as tx:
            user = tx.get_user(name) if isinstance(name, str) and 0 < len(name) <= 128 else None
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return None
        with self._hashing:
            try:
                self._hasher.verify(user.password_hash if user is not None else self._dummy, password)
            except argon2.exceptions.VerificationError:
                return None
            except argon2.exceptions.InvalidHashError:
                return None
        return user
