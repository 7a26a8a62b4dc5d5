"""Loupe's own account routes (not Clarifai's): sign-in sessions, me, apps, keys, members, tokens, users,
and the audit trail. Answers are msgspec Structs with Clarifai's status beside the fields."""

from __future__ import annotations

import math
from collections.abc import Iterator

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.params import RawBody
from litestar.response import Stream

from loupe.accounts.access import Grant, Via
from loupe.accounts.audit import AuditQuery, parse_resource
from loupe.application import Loupe
from loupe.backbones.registry import BACKBONE_IDS, DEFAULT_BACKBONE
from loupe.errors import InvalidArgument
from loupe.service.auth import ACCOUNT, MANAGE, OWN, PUBLIC, READ, SERVER, SESSION_COOKIE
from loupe.service.clarifai_json import timestamp
from loupe.service.threads import in_thread
from loupe.service.wire import decode
from loupe.store.records import AuditEntry, KeyRecord, Member, Role, Scope, User


class Status(msgspec.Struct, frozen=True):
    code: int = 10000
    description: str = "Ok"


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class UserView(msgspec.Struct):
    name: str
    admin: bool
    created_at: str


class AppView(msgspec.Struct):
    id: str
    backbone: str
    role: Role
    input_count: int
    concept_count: int
    model_count: int
    created_at: str


class SessionAnswer(msgspec.Struct):
    user: UserView
    csrf_token: str  # send it back as X-CSRF-Token on every write made with the cookie
    expires_at: str  # the absolute expiry; idle sessions end sooner
    status: Status = Status()


class MeAnswer(msgspec.Struct):
    user: UserView
    apps: list[AppView]
    via: Via
    csrf_token: str | None  # the session's, for a page that reloaded
    backbones: list[str]  # what a new app may be embedded by
    default_backbone: str
    status: Status = Status()


class KeyView(msgspec.Struct):
    id: str
    hint: str
    name: str
    scope: Scope | None  # None for a personal access token (it has its user's roles)
    created_at: str
    created_by: str
    last_used_at: str | None


class KeysAnswer(msgspec.Struct):
    keys: list[KeyView]
    status: Status = Status()


class NewKeyAnswer(msgspec.Struct):
    key: str  # shown only in this answer
    info: KeyView
    status: Status = Status()


class CreateKey(msgspec.Struct, forbid_unknown_fields=True):
    scope: Scope = Scope.ALL
    name: str = ""


class CreateToken(msgspec.Struct, forbid_unknown_fields=True):
    name: str = ""
    scope: str = "all"  # or "metrics": reads /metrics only (a scraper's credential)


class CreateApp(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    backbone: str | None = None


class AppAnswer(msgspec.Struct):
    app: AppView
    status: Status = Status()


class MemberView(msgspec.Struct):
    user: str
    role: Role
    added_at: str
    added_by: str


class MembersAnswer(msgspec.Struct):
    members: list[MemberView]
    status: Status = Status()


class AddMember(msgspec.Struct, forbid_unknown_fields=True):
    user: str
    role: Role


class MemberAnswer(msgspec.Struct):
    member: MemberView
    status: Status = Status()


class CreateUser(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    password: str
    admin: bool = False


class UsersAnswer(msgspec.Struct):
    users: list[UserView]
    status: Status = Status()


class AuditAnswer(msgspec.Struct):
    entries: list[AuditEntry]
    status: Status = Status()


class Done(msgspec.Struct):
    status: Status = Status()


def _user_view(user: User) -> UserView:
    return UserView(user.name, user.admin, timestamp(user.created_at))


def _key_view(record: KeyRecord) -> KeyView:
    return KeyView(id=record.id, hint=record.hint, name=record.name, scope=None if record.user else record.scope,
                   created_at=timestamp(record.created_at), created_by=record.created_by,
                   last_used_at=timestamp(record.last_used_at) if record.last_used_at else None)


def _member_view(member: Member) -> MemberView:
    return MemberView(member.user, member.role, timestamp(member.added_at), member.added_by)


def _secure(request: Request, loupe: Loupe) -> bool:
    setting = loupe.config.accounts.cookie_secure
    if setting in ("true", "false"):
        return setting == "true"
    return request.url.scheme == "https" or str(request.app.state.public_url).startswith("https://")


# ---------------------------------------------------------------- sessions and me
@post("/loupe/session", status_code=200, opt=PUBLIC)
@in_thread
def sign_in(loupe: Loupe, request: Request, body: RawBody) -> Response:
    req = decode(body, SignIn)
    address = request.client.host if request.client else ""
    opened, user = loupe.access.sign_in(req.username, req.password, address)
    limits = loupe.config.accounts
    answer = SessionAnswer(user=_user_view(user), csrf_token=opened.session.csrf_token,
                           expires_at=timestamp(opened.session.created_at + limits.session_max_seconds))
    cookie = Cookie(key=SESSION_COOKIE, value=opened.token, path="/", httponly=True, samesite="strict",
                    secure=_secure(request, loupe), max_age=math.ceil(limits.session_max_seconds))
    return Response(answer, cookies=[cookie], headers={"Cache-Control": "no-store"})


@delete("/loupe/session", status_code=200, opt=ACCOUNT)
@in_thread
def sign_out(loupe: Loupe, caller: Grant, request: Request) -> Response:
    if caller.via is not Via.SESSION:
        raise InvalidArgument("no session to end: this request came with a key")
    loupe.access.sign_out(request.cookies.get(SESSION_COOKIE, ""))
    response = Response(Done())
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@get("/loupe/me", opt=ACCOUNT)
@in_thread
def me(loupe: Loupe, caller: Grant) -> MeAnswer:
    assert caller.user is not None
    apps = [AppView(a.app.id, a.app.backbone, a.role, a.input_count, a.concept_count, a.model_count,
                    timestamp(a.app.created_at)) for a in loupe.members.apps_of(caller.user)]
    return MeAnswer(user=_user_view(caller.user), apps=apps, via=caller.via,
                    csrf_token=caller.session.csrf_token if caller.session is not None else None,
                    backbones=list(BACKBONE_IDS), default_backbone=DEFAULT_BACKBONE)


# ---------------------------------------------------------------- apps
@post("/loupe/apps", status_code=200, opt=ACCOUNT)
@in_thread
def create_app_route(loupe: Loupe, caller: Grant, body: RawBody) -> AppAnswer:
    """Any signed-in user may create an app; they become its owner."""
    req = decode(body, CreateApp)
    assert caller.user is not None
    app = loupe.apps.create(req.id, req.backbone, owner=caller.user.name, by=caller.actor)
    return AppAnswer(AppView(app.id, app.backbone, Role.OWNER, 0, 0, 0, timestamp(app.created_at)))


@delete("/loupe/apps/{app_id:str}", status_code=200, opt=OWN)
@in_thread
def delete_app_route(loupe: Loupe, caller: Grant) -> Done:
    loupe.apps.delete(caller.app_id, by=caller.actor)
    return Done()


# ---------------------------------------------------------------- keys of an app
@get("/loupe/apps/{app_id:str}/keys", opt=MANAGE)
@in_thread
def list_keys(loupe: Loupe, caller: Grant) -> KeysAnswer:
    return KeysAnswer([_key_view(r) for r in loupe.keys.of_app(caller.app_id)])


@post("/loupe/apps/{app_id:str}/keys", status_code=200, opt=MANAGE)
@in_thread
def create_key(loupe: Loupe, caller: Grant, body: RawBody) -> NewKeyAnswer:
    req = decode(body, CreateKey)
    key, record = loupe.keys.issue(caller.app_id, req.scope, name=req.name, by=caller.actor)
    return NewKeyAnswer(key, _key_view(record))


@delete("/loupe/apps/{app_id:str}/keys/{key_id:str}", status_code=200, opt=MANAGE)
@in_thread
def revoke_key(loupe: Loupe, caller: Grant, key_id: str) -> Done:
    loupe.keys.revoke(caller.app_id, key_id, by=caller.actor)
    return Done()


# ---------------------------------------------------------------- members
@get("/loupe/apps/{app_id:str}/members", opt=READ)
@in_thread
def list_members(loupe: Loupe, caller: Grant) -> MembersAnswer:
    return MembersAnswer([_member_view(m) for m in loupe.members.of_app(caller.app_id)])


@post("/loupe/apps/{app_id:str}/members", status_code=200, opt=OWN)
@in_thread
def add_member(loupe: Loupe, caller: Grant, body: RawBody) -> MemberAnswer:
    req = decode(body, AddMember)
    return MemberAnswer(_member_view(loupe.members.add(caller.app_id, req.user, req.role, by=caller.actor)))


@delete("/loupe/apps/{app_id:str}/members/{user:str}", status_code=200, opt=OWN)
@in_thread
def remove_member(loupe: Loupe, caller: Grant, user: str) -> Done:
    loupe.members.remove(caller.app_id, user, by=caller.actor)
    return Done()


# ---------------------------------------------------------------- audit
@get("/loupe/apps/{app_id:str}/audit", opt=MANAGE)
@in_thread
def audit(loupe: Loupe, caller: Grant, actor: str = "", resource: str = "", since: float = 0.0,
          until: float = 0.0, page: int = 1, per_page: int = 100) -> AuditAnswer:
    """Newest first, filtered by who (user name or key id), what (resource) and when (unix seconds)."""
    query = AuditQuery(actor=actor, resource=parse_resource(resource), since=since, until=until)
    return AuditAnswer(loupe.audit.page(caller.app_id, query, page, per_page))


@get("/loupe/apps/{app_id:str}/audit/export", opt=MANAGE, media_type="application/x-ndjson")
@in_thread
def export_audit(loupe: Loupe, caller: Grant, actor: str = "", resource: str = "", since: float = 0.0,
                 until: float = 0.0) -> Stream:
    """Every matching entry as JSON lines, newest first, streamed (read in batches)."""
    query = AuditQuery(actor=actor, resource=parse_resource(resource), since=since, until=until)
    lines = loupe.audit.json_lines(caller.app_id, query)
    first = next(lines, b"")  # an unknown app is a 404 now, not a broken stream later
    return Stream(_chain(first, lines),
                  headers={"Content-Disposition": f'attachment; filename="{caller.app_id}-audit.jsonl"'})


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


# ---------------------------------------------------------------- personal access tokens
@get("/loupe/tokens", opt=ACCOUNT)
@in_thread
def list_tokens(loupe: Loupe, caller: Grant) -> KeysAnswer:
    assert caller.user is not None
    return KeysAnswer([_key_view(r) for r in loupe.keys.tokens(caller.user.name)])


@post("/loupe/tokens", status_code=200, opt=ACCOUNT)
@in_thread
def create_token(loupe: Loupe, caller: Grant, body: RawBody) -> NewKeyAnswer:
    req = decode(body, CreateToken)
    assert caller.user is not None
    token, record = loupe.keys.create_token(caller.user.name, name=req.name, by=caller.actor,
                                            scope=req.scope)
    return NewKeyAnswer(token, _key_view(record))


@delete("/loupe/tokens/{token_id:str}", status_code=200, opt=ACCOUNT)
@in_thread
def revoke_token(loupe: Loupe, caller: Grant, token_id: str) -> Done:
    assert caller.user is not None
    loupe.keys.revoke_token(caller.user.name, token_id, by=caller.actor)
    return Done()


# ---------------------------------------------------------------- users (server admins)
@get("/loupe/users", opt=SERVER)
@in_thread
def list_users(loupe: Loupe) -> UsersAnswer:
    return UsersAnswer([_user_view(u) for u in loupe.users.all()])


@post("/loupe/users", status_code=200, opt=SERVER)
@in_thread
def create_user(loupe: Loupe, caller: Grant, body: RawBody) -> UsersAnswer:
    req = decode(body, CreateUser)
    return UsersAnswer([_user_view(loupe.users.create(req.name, req.password, admin=req.admin, by=caller.actor))])


@delete("/loupe/users/{name:str}", status_code=200, opt=SERVER)
@in_thread
def delete_user(loupe: Loupe, caller: Grant, name: str) -> Done:
    loupe.users.delete(name, by=caller.actor)
    return Done()


ROUTES = [sign_in, sign_out, me, create_app_route, delete_app_route, list_keys, create_key, revoke_key,
          list_members, add_member, remove_member, audit, export_audit, list_tokens, create_token, revoke_token,
          list_users, create_user, delete_user]
