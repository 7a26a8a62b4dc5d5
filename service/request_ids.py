"""Request ids, the access log and the request metrics: one middleware sees every request finish.

Every HTTP request gets an id: the client's `X-Request-Id` when it is a short token of safe characters,
else a new one. It is in Clarifai's `status.req_id` of every JSON answer built by the routes and the
error handler, in the `X-Request-Id` response header, and in the access-log line and any error logged
while handling it, so one id ties a client's report to the server's log. Log lines never carry bodies,
image bytes, keys, passwords or query strings (a key may travel in one).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

access = logging.getLogger("loupe.access")
REQUEST_ID: ContextVar[str] = ContextVar("loupe_request_id", default="")
_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def current_request_id() -> str:
    return REQUEST_ID.get()


def with_request_id(status: dict[str, Any]) -> dict[str, Any]:
    """A Clarifai status with this request's `req_id` (as Clarifai's answers carry it)."""
    rid = REQUEST_ID.get()
    return {**status, "req_id": rid} if rid else status


class RequestIdMiddleware:
    """Pure ASGI: the id is set before any handler runs (contextvars follow requests into threads)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            metrics = getattr(scope["app"].state, "metrics", None)  # service.metrics, by route template
            if metrics is not None:
                metrics.observe(str(scope.get("path_template") or "unmatched"), str(scope.get("method", "")),
                                status[0], seconds)
            access.info("%s %s %d", scope.get("method", ""), scope.get("path", ""), status[0], extra={
                "req_id": request_id, "status": status[0], "ms": round(seconds * 1000, 1),
                "method": scope.get("method", ""), "path": scope.get("path", "")})
            REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id and the access fields."""

    FIELDS = ("req_id", "method", "path", "status", "ms")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage()}
        rid = getattr(record, "req_id", "") or current_request_id()
        if rid:
            out["req_id"] = rid
        for field in self.FIELDS[1:]:
            if hasattr(record, field):
                out[field] = getattr(record, field)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "req_id", "") or current_request_id()
        line = super().format(record)
        ms = f" {record.ms} ms" if hasattr(record, "ms") else ""
        return f"{line}{ms} req_id={rid}" if rid else line


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    """The server's logging: `fmt` text|json, `level` debug|info|warning|error (access lines are info)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json"
                         else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
