"""Errors -> Clarifai-style JSON with the right HTTP status. No client mistake becomes a 500."""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException

from loupe.custom_models import ModelNotTrained
from loupe.errors import (
    BackboneUnavailable,
    CapabilityMissing,
    Conflict,
    ImageError,
    InvalidArgument,
    LoupeError,
    NotFound,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, http_status: int, code: int, description: str, details: str = "") -> None:
        super().__init__(description)
        self.http_status, self.code, self.description, self.details = http_status, code, description, details


_NOT_FOUND_CODES = {"input": 30102, "model": 21200, "concept": 21202, "app": 11009}


def to_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        resource = exc.message.split(" ", 1)[0]
        return ApiError(404, _NOT_FOUND_CODES.get(resource, 11102), exc.message)
    if isinstance(exc, Conflict):
        return ApiError(409, 11102, exc.message)
    if isinstance(exc, ModelNotTrained):
        return ApiError(400, 21102, exc.message)
    if isinstance(exc, ImageError):
        return ApiError(400, 30002, exc.message)
    if isinstance(exc, (CapabilityMissing, InvalidArgument)):
        return ApiError(400, 11102, exc.message)
    if isinstance(exc, BackboneUnavailable):
        return ApiError(503, 21110, exc.message)
    if isinstance(exc, LoupeError):
        return ApiError(400, 11102, exc.message)
    if isinstance(exc, HTTPException):
        code = {401: 11009, 403: 11007, 404: 11102, 413: 11102}.get(exc.status_code, 11102)
        return ApiError(exc.status_code, code, str(exc.detail))
    log.exception("unexpected error", exc_info=exc)
    return ApiError(500, 98004, "internal error")


def error_response(request: Request, exc: Exception) -> Response:
    api = to_api_error(exc)
    status = {"code": api.code, "description": api.description}
    if api.details:
        status["details"] = api.details
    return Response({"status": status}, status_code=api.http_status)
