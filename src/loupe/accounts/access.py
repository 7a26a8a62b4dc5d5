"""Who is calling and what they may do: one decision per request, from its credential and target.

Credentials: an app key (`Authorization: Key lk_...`: its app, its scope's role), a personal access
token (`Key lp_...`: its user, in each app with the user's role) or the page's session cookie (its user;
writes must echo the session's CSRF token). A user who is not a member of an app is told the app does
not exist, exactly as a key of another app is.
"""

from __future__ import annotations

import hmac
from enum import StrEnum

import msgspec

from loupe.accounts.keys import TOKEN_PREFIX, ApiKeys, key_actor
from loupe.accounts.members import Members
from loupe.accounts.roles import SCOPE_ROLE, Permission, allows
from loupe.accounts.sessions import LoginThrottle, OpenedSession, Sessions
from loupe.accounts.users import Users
from loupe.errors import Forbidden, InvalidArgument, NotFound, Unauthenticated
from loupe.store.records import Actor, ActorKind, KeyRecord, Role, Scope, Session, User


class Via(StrEnum):
    APP_KEY = "app_key"
    TOKEN = "token"
    SESSION = "session"


class Target(StrEnum):
    APP = "app"  # an app's data: the app named in the path, or an app key's own
    ACCOUNT = "account"  # the signed-in user's own things (apps list, tokens, sign-out)
    SERVER = "server"  # users of the server: server admins only
    METRICS = "metrics"  # the server's metrics: a server admin (a token of scope metrics reads only these)


class AccessRequest(msgspec.Struct, frozen=True, kw_only=True):
    authorization: list[str]  # every Authorization header sent
    cookie: str = ""  # the session cookie, if any
    csrf: str = ""  # X-CSRF-Token
    safe_method: bool = True  # GET/HEAD/OPTIONS: no CSRF check
    target: Target = Target.APP
    app_id: str = ""  # from the path ("" on the app-key paths)
    permission: Permission = Permission.READ


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    actor: Actor  # who the audit trail records
    via: Via
    user: User | None = None
    key: KeyRecord | None = None
    session: Session | None = None
    app_id: str = ""  # Target.APP: the app acted on
    role: Role | None = None  # Target.APP: the role acted with

    def may(self, permission: Permission) -> bool:
        """Whether the role acted with in the app allows more than the route itself asked for."""
        return self.role is not None and allows(self.role, permission)


class Access:
    def __init__(self, users: Users, members: Members, keys: ApiKeys, sessions: Sessions,
                 throttle: LoginThrottle) -> None:
        self._users = users
        self._members = members
        self._keys = keys
        self._sessions = sessions
        self._throttle = throttle

    def authorize(self, request: AccessRequest) -> Grant:
        grant = self._identify(request)
        metrics_only = grant.key is not None and grant.key.scope is Scope.METRICS
        if metrics_only and request.target is not Target.METRICS:
            raise Forbidden("a token of scope 'metrics' reads /metrics and nothing else")
        if request.target is Target.APP:
            return self._in_app(grant, request)
        if grant.user is None:
            raise Forbidden("an app key acts only on its app: sign in, or use a personal access token")
        if request.target is Target.SERVER and not grant.user.admin:
            raise Forbidden("only a server admin may manage users")
        if request.target is Target.METRICS and not grant.user.admin:
            raise Forbidden("only a server admin's credential reads the metrics (they name every app)")
        return grant

    def _identify(self, request: AccessRequest) -> Grant:
        values = request.authorization
        if len(values) > 1 or "," in (values[0] if values else ""):  # repeated, or folded into one by a proxy
            raise InvalidArgument("send exactly one Authorization header")
        if values:
            return self._by_key(values[0])
        if request.cookie:
            session = self._sessions.check(request.cookie)
            user = self._user_of(session)
            if session is None or user is None:
                raise Unauthenticated("the session has expired or was ended: sign in again")
            if not request.safe_method and not hmac.compare_digest(request.csrf.encode(), session.csrf_token.encode()):
                raise Forbidden("a write with the session cookie must send the session's X-CSRF-Token header")
            return Grant(actor=Actor(kind=ActorKind.USER, id=user.name, via="session"), via=Via.SESSION,
                         user=user, session=session)
        raise Unauthenticated("missing API key: send the header 'Authorization: Key <your key>'")

    def _by_key(self, header: str) -> Grant:
        scheme, _sep, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "key" or not key or key == "None":
            raise Unauthenticated("missing API key: send the header 'Authorization: Key <your key>'")
        record = self._keys.verify(key)
        if record is None:
            raise Unauthenticated("API key not found or revoked")
        if not record.user:
            return Grant(actor=key_actor(record), via=Via.APP_KEY, key=record)
        try:
            user = self._users.get(record.user)
        except NotFound:
            raise Unauthenticated("API key not found or revoked") from None
        return Grant(actor=key_actor(record), via=Via.TOKEN, user=user, key=record)

    def _user_of(self, session: Session | None) -> User | None:
        if session is None:
            return None
        try:
            return self._users.get(session.user)
        except NotFound:
            return None

    def _in_app(self, grant: Grant, request: AccessRequest) -> Grant:
        if grant.via is Via.APP_KEY:
            assert grant.key is not None
            if request.app_id and request.app_id != grant.key.app_id:
                raise NotFound("app", request.app_id)
            app_id, role = grant.key.app_id, SCOPE_ROLE[grant.key.scope]
        else:
            assert grant.user is not None
            if not request.app_id:
                what = "a personal access token" if grant.via is Via.TOKEN else "a signed-in user"
                raise InvalidArgument(f"{what} names the app in the path: /v2/users/me/apps/{{app_id}}/...")
            found = self._members.role_of(grant.user, request.app_id)
            if found is None:
                raise NotFound("app", request.app_id)
            app_id, role = request.app_id, found
        if not allows(role, request.permission):
            raise Forbidden(f"a {role.value} of app {app_id!r} may not do this (needs '{request.permission.value}')")
        return msgspec.structs.replace(grant, app_id=app_id, role=role)

    def sign_in(self, name: str, password: str, address: str) -> tuple[OpenedSession, User]:
        """A new session for a right password. Wrong ones count against the name and the address."""
        self._throttle.check(name, address)
        user = self._users.authenticate(name, password)
        if user is None:
            self._throttle.failed(name, address)
            raise Unauthenticated("wrong user name or password")
        self._throttle.succeeded(name)
        return self._sessions.open(user.name, address), user

    def sign_out(self, cookie: str) -> None:
        self._sessions.close(cookie)


def is_token(key: str) -> bool:
    return key.startswith(TOKEN_PREFIX)
