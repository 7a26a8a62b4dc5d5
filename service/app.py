"""The Litestar application: Clarifai-v2-compatible routes over one Loupe application object."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar, Request, Response, Router, get
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.response import File
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler
from prometheus_client import CONTENT_TYPE_LATEST

from loupe.application import Loupe
from loupe.service import (
    accounts_routes,
    app_routes,
    concepts_routes,
    inputs_routes,
    models_routes,
    searches_routes,
    workflows_routes,
)
from loupe.service.auth import DEPENDENCIES, METRICS, PUBLIC, authorize, declared
from loupe.service.errors import error_response
from loupe.service.metrics import Metrics
from loupe.service.request_ids import RequestIdMiddleware
from loupe.service.transport import add_security_headers

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024  # 128 inputs of base64 images fit; anything larger is refused (413)


STATIC = Path(__file__).resolve().parent / "static"


@get("/", sync_to_thread=False, include_in_schema=False)
def index_page() -> File:
    """The web page: one HTML file and its script, calling the same API the clients use."""
    return File(STATIC / "index.html", content_disposition_type="inline", media_type="text/html")


@get("/healthz", sync_to_thread=False)
def healthz(request: Request) -> dict:
    """Public liveness (200 while the process serves) with the readiness verdict; the details are
    behind a key (GET /v2/loupe/status)."""
    loupe: Loupe = request.app.state.loupe
    return {"status": {"code": 10000, "description": "Ok"}, "ready": loupe.ready().ready}


@get("/metrics", sync_to_thread=False, guards=[authorize], opt=METRICS, include_in_schema=False)
def metrics_endpoint(request: Request) -> Response:
    """Prometheus text. A server admin's personal access token (as Prometheus's `authorization` setting
    sends it), best one of scope `metrics`, which reads nothing else: the metrics name every app, so no
    app's key may read them (`--metrics-bind` serves them without a credential on a private address)."""
    return Response(request.app.state.metrics.text(), media_type=CONTENT_TYPE_LATEST)


@get("/readyz", sync_to_thread=False)
def readyz(request: Request) -> Response:
    """Readiness for load balancers: 503 while the backbone loads or the training queue is full."""
    loupe: Loupe = request.app.state.loupe
    ready = loupe.ready().ready
    return Response({"ready": ready}, status_code=200 if ready else 503)


def options_handlers(handlers: list) -> list[HTTPRouteHandler]:
    """One public OPTIONS answer per API path, listing every method any handler serves there (Litestar's
    automatic one lists only the first handler's methods, and would sit behind the key guard)."""
    methods: dict[str, set[str]] = {}
    for handler in handlers:
        for path in handler.paths:
            methods.setdefault(path, {"OPTIONS"}).update(handler.http_methods)
    out = []
    for path, allowed in methods.items():
        allow = ", ".join(sorted(allowed))

        def answer(allow: str = allow) -> Response:
            return Response(content=None, status_code=204, headers={"Allow": allow})

        out.append(HTTPRouteHandler(path=path, http_method=[HttpMethod.OPTIONS], include_in_schema=False,
                                    sync_to_thread=False, name=f"options:{path}", opt=PUBLIC)(answer))
    return out


# An app's routes: at /v2/... the app is the app key's; at /v2/users/me/apps/{app_id}/... (Clarifai's
# user-scoped paths) it is named, for personal access tokens and the page's session.
APP_ROUTES = [*inputs_routes.ROUTES, *concepts_routes.ROUTES, *models_routes.ROUTES, *searches_routes.ROUTES,
              *workflows_routes.ROUTES, *app_routes.ROUTES]
USER_SCOPED_PREFIX = "/v2/users/me/apps/{app_id:str}"


def _api_router(path: str, routes: list) -> Router:
    undeclared = [f"{sorted(h.http_methods)} {path}{p}" for h in routes for p in h.paths if not declared(h)]
    if undeclared:  # a route nobody said who may call: refuse to serve rather than guess
        raise RuntimeError(f"routes without a permission (opt=READ/LABEL/MANAGE/OWN/ACCOUNT/SERVER): {undeclared}")
    # The OPTIONS answers come first, so Litestar adds no automatic ones; they are marked PUBLIC.
    return Router(path=path, guards=[authorize], dependencies=DEPENDENCIES,
                  route_handlers=[*options_handlers(routes), *routes])


def create_app(loupe: Loupe, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               public_url: str | None = None) -> Litestar:
    """The caller owns `loupe` and closes it (an ASGI lifespan may run more than once per app)."""
    # Every API route sits behind the guard; only the page, its files, liveness and the schema don't.
    public: list[ControllerRouterHandler] = [healthz, readyz, index_page, metrics_endpoint,
                                             create_static_files_router(path="/static", directories=[STATIC])]
    app = Litestar(
        route_handlers=[*public, _api_router("/v2", [*APP_ROUTES, *accounts_routes.ROUTES]),
                        _api_router(USER_SCOPED_PREFIX, APP_ROUTES)],
        exception_handlers={Exception: error_response},
        middleware=[RequestIdMiddleware],  # X-Request-Id, status.req_id, the access log, request metrics
        logging_config=None,  # `loupe serve` configures logging (text or JSON); Litestar's would replace it
        before_send=[add_security_headers],
        request_max_body_size=max_body_bytes,
        openapi_config=OpenAPIConfig(title="Loupe", version="0.1.0", path="/schema",
                                     render_plugins=[JsonRenderPlugin(path="/openapi.json")]),
        debug=False,
    )
    app.state.loupe = loupe
    app.state.metrics = Metrics(loupe)
    # Image URLs in answers start with this, whatever Host header a request carried.
    app.state.public_url = (public_url or loupe.config.public_url or "http://127.0.0.1:8080").rstrip("/")
    return app
