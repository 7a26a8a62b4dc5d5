"""Errors -> Clarifai-style JSON with the right HTTP status, mapped by type (and a NotFound's resource).
No client mistake becomes a 500."""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException

from loupe.errors import (
    BackboneUnavailable,
    Busy,
    Conflict,
    Forbidden,
    ImageError,
    LoupeError,
    ModelNotTrained,
    NotFound,
    QuotaExceeded,
    StorageFull,
    TooLong,
    Unauthenticated,
    UrlFetchError,
    VideoError,
)
from loupe.service.request_ids import with_request_id

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, http_status: int, code: int, description: str, details: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.http_status, self.code, self.description, self.details = http_status, code, description, details
        self.headers = headers or {}


_NOT_FOUND_CODES = {"input": 30102, "model": 21200, "version": 21200, "concept": 21202, "app": 11009}

# Most specific first: the first class the error is an instance of decides (status, Clarifai code).
_BY_TYPE: list[tuple[type[LoupeError], int, int]] = [
    (ModelNotTrained, 400, 21102),
    (ImageError, 400, 30002),
    (VideoError, 400, 30002),
    (UrlFetchError, 400, 30002),
    (Unauthenticated, 401, 11009),
    (Forbidden, 403, 11007),
    (Conflict, 409, 11102),
    (Busy, 429, 11006),
    (QuotaExceeded, 429, 11006),
    (TooLong, 503, 11006),
    (BackboneUnavailable, 503, 21110),
    (StorageFull, 507, 11102),
    (LoupeError, 400, 11102),
]


def to_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError(404, _NOT_FOUND_CODES.get(exc.resource, 11102), exc.message)
    if isinstance(exc, LoupeError):
        status, code = next((s, c) for kind, s, c in _BY_TYPE if isinstance(exc, kind))
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
        return ApiError(status, code, exc.message, headers=headers)
    if isinstance(exc, HTTPException):
        code = {401: 11009, 403: 11007, 404: 11102, 413: 11102}.get(exc.status_code, 11102)
        return ApiError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
    log.exception("unexpected error", exc_info=exc)
    return ApiError(500, 98004, "internal error")


def error_response(request: Request, exc: Exception) -> Response:
    api = to_api_error(exc)
    status = {"code": api.code, "description": api.description}
    if api.details:
        status["details"] = api.details
    if api.http_status < 500:  # the reason, with the request id; never the body, a key or a password
        log.info("refused %d %s: %s", api.http_status, api.code, api.description)
    return Response({"status": with_request_id(status)}, status_code=api.http_status, headers=api.headers)
