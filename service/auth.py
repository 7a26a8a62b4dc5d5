"""`Authorization: Key <key>` decides the app; a predict-scope key cannot write."""

from __future__ import annotations

from litestar import Request
from loupe.service.errors import ApiError

from loupe.api_keys import KeyRecord, Scope
from loupe.application import Loupe


def caller(request: Request) -> tuple[Loupe, KeyRecord]:
    loupe: Loupe = request.app.state.loupe
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "key" or not key.strip() or key.strip() == "None":
        raise ApiError(401, 11009, "missing API key: send the header 'Authorization: Key <your key>'")
    record = loupe.keys.verify(key.strip())
    if record is None:
        raise ApiError(401, 11009, "API key not found or revoked")
    return loupe, record


def writer(request: Request) -> tuple[Loupe, KeyRecord]:
    loupe, record = caller(request)
    if record.scope is not Scope.ALL:
        raise ApiError(403, 11007, "this API key may only predict and search (scope 'predict')")
    return loupe, record
