"""`Authorization: Key <key>` decides the app; a predict-scope key cannot write.

Declared once, as Litestar guards on the API router (every /v2 route needs a key) and on the writing
handlers (scope 'all'). Guards run before Litestar reads the body, so an unauthenticated client gets
its 401 at once instead of making the server buffer its upload.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler

from loupe.application import Loupe
from loupe.apps.keys import KeyRecord, Scope
from loupe.service.errors import ApiError

# The API router's handlers skip the key check only when they carry this `opt` (its OPTIONS answers).
PUBLIC = {"public": True}


def require_key(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """The caller's key record, checked from the headers alone; kept on the connection for `key`."""
    if handler.opt.get("public"):
        return
    values = connection.headers.getall("authorization", [])
    if len(values) > 1 or "," in (values[0] if values else ""):  # repeated, or folded into one by a proxy
        raise ApiError(400, 11009, "send exactly one Authorization header")
    scheme, _sep, key = (values[0] if values else "").partition(" ")
    key = key.strip()
    if scheme.lower() != "key" or not key or key == "None":
        raise ApiError(401, 11009, "missing API key: send the header 'Authorization: Key <your key>'")
    loupe: Loupe = connection.app.state.loupe
    record = loupe.keys.verify(key)
    if record is None:
        raise ApiError(401, 11009, "API key not found or revoked")
    connection.state.key = record


def require_write(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Scope 'all': add, change or delete. Runs after `require_key` (router guards come first)."""
    record: KeyRecord = connection.state.key
    if record.scope is not Scope.ALL:
        raise ApiError(403, 11007, "this API key may only predict and search (scope 'predict')")


def _key(request: ASGIConnection) -> KeyRecord:
    return request.state.key


def _loupe(request: ASGIConnection) -> Loupe:
    return request.app.state.loupe


# Handlers name `key: KeyRecord` and `loupe: Loupe` in their signature and get them from here.
DEPENDENCIES = {"key": Provide(_key, sync_to_thread=False), "loupe": Provide(_loupe, sync_to_thread=False)}
WRITE = [require_write]
