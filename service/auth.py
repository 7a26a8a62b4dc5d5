"""Who may call what: every API route declares one permission (or an account-level target) in its `opt`,
and one guard asks the core (`loupe.access.authorize`) for a decision from the request's credential.

Guards run before Litestar reads the body, so an unauthenticated client gets its 401 at once instead of
making the server buffer its upload. `create_app` refuses a route table with an undeclared route.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler

from loupe.accounts.access import AccessRequest, Grant, Target
from loupe.accounts.roles import Permission
from loupe.application import Loupe

SESSION_COOKIE = "loupe_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# What a route needs, as its `opt`.
PUBLIC = {"public": True}  # the page, liveness, sign-in, OPTIONS answers
READ = {"permission": Permission.READ}
LABEL = {"permission": Permission.LABEL}
MANAGE = {"permission": Permission.MANAGE}
OWN = {"permission": Permission.OWN}
ACCOUNT = {"target": Target.ACCOUNT}  # any signed-in user (session or personal access token)
SERVER = {"target": Target.SERVER}  # a server admin
METRICS = {"target": Target.METRICS}  # a server admin, or a token of scope metrics


def declared(handler: BaseRouteHandler) -> bool:
    opt = handler.opt
    return bool(opt.get("public")) or "permission" in opt or "target" in opt


def authorize(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """The caller's grant, decided from the headers alone; kept on the connection for `caller`."""
    opt = handler.opt
    if opt.get("public"):
        return
    loupe: Loupe = connection.app.state.loupe
    connection.state.grant = loupe.access.authorize(AccessRequest(
        authorization=connection.headers.getall("authorization", []),
        cookie=connection.cookies.get(SESSION_COOKIE, ""),
        csrf=connection.headers.get("x-csrf-token", ""),
        safe_method=connection.scope.get("method", "GET") in SAFE_METHODS,
        target=opt.get("target", Target.APP),
        app_id=connection.path_params.get("app_id", ""),
        permission=opt.get("permission", Permission.READ)))


def _caller(request: ASGIConnection) -> Grant:
    return request.state.grant


def _loupe(request: ASGIConnection) -> Loupe:
    return request.app.state.loupe


# Handlers name `caller: Grant` and `loupe: Loupe` in their signature and get them from here.
DEPENDENCIES = {"caller": Provide(_caller, sync_to_thread=False), "loupe": Provide(_loupe, sync_to_thread=False)}
