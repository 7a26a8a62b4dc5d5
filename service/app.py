"""The Litestar application: Clarifai-v2-compatible routes over one Loupe application object."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar, Request, Router, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.response import File
from litestar.static_files import create_static_files_router
from loupe.service import (
    app_routes,
    concepts_routes,
    inputs_routes,
    models_routes,
    searches_routes,
    workflows_routes,
)
from loupe.service.auth import DEPENDENCIES, require_key
from loupe.service.errors import error_response
from loupe.service.transport import add_security_headers

from loupe.application import Loupe

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024  # 128 inputs of base64 images fit; anything larger is refused (413)


STATIC = Path(__file__).resolve().parent / "static"


@get("/", sync_to_thread=False, include_in_schema=False)
def index_page() -> File:
    """The web page: one HTML file and its script, calling the same API the clients use."""
    return File(STATIC / "index.html", content_disposition_type="inline", media_type="text/html")


@get("/healthz", sync_to_thread=False)
def healthz(request: Request) -> dict:
    """Liveness and readiness: the store answers and the default backbone is loaded."""
    loupe: Loupe = request.app.state.loupe
    facts = loupe.ready()
    return {"status": {"code": 10000, "description": "Ok"}, "ready": bool(facts["backbones_loaded"]), **facts}


def create_app(loupe: Loupe, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, public_url: str | None = None) -> Litestar:
    """The caller owns `loupe` and closes it (an ASGI lifespan may run more than once per app)."""
    # Every API route sits behind the key guard; only the page, its files, liveness and the schema don't.
    api = Router(path="/", guards=[require_key], dependencies=DEPENDENCIES,
                 route_handlers=[*inputs_routes.ROUTES, *concepts_routes.ROUTES, *models_routes.ROUTES,
                                 *searches_routes.ROUTES, *workflows_routes.ROUTES, *app_routes.ROUTES])
    public = [healthz, index_page, create_static_files_router(path="/static", directories=[STATIC])]
    app = Litestar(
        route_handlers=[api, *public],
        exception_handlers={Exception: error_response},
        before_send=[add_security_headers],
        request_max_body_size=max_body_bytes,
        openapi_config=OpenAPIConfig(title="Loupe", version="0.1.0", path="/schema",
                                     render_plugins=[JsonRenderPlugin(path="/openapi.json")]),
        debug=False,
    )
    app.state.loupe = loupe
    # Image URLs in answers start with this, whatever Host header a request carried.
    app.state.public_url = (public_url or loupe.config.public_url or "http://127.0.0.1:8080").rstrip("/")
    return app
