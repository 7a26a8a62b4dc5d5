"""`loupe serve --workers N`: N server processes over one data dir.

uvicorn's supervisor binds the socket once, spawns the workers (fresh interpreters, not forks: each
opens LMDB itself, as LMDB requires) and restarts any that dies. Each worker builds its own
application object from the settings the parent put in the environment; they share everything
through LMDB: a write in one is seen by the others on their next request (per-app generations),
trains are serialised per model by a lease record (loupe.scale.train_lease).
"""

from __future__ import annotations

import os

import msgspec
from litestar import Litestar

from loupe.application import Loupe
from loupe.backbones.registry import DEFAULT_BACKBONE
from loupe.config import config_from_env
from loupe.service.app import create_app
from loupe.service.request_ids import configure_logging
from loupe.service.transport import HeaderDeadline

SETTINGS_ENV = "LOUPE_WORKER_SETTINGS"


class WorkerSettings(msgspec.Struct, frozen=True):
    data_dir: str
    threads: int
    runtime: str | None
    precision: str | None
    max_body_bytes: int
    public_url: str
    header_timeout: float
    url_allow_hosts: list[str] = []
    metrics_bind: list = []  # [host, port] of --metrics-bind; [] without it


def export_settings(settings: WorkerSettings) -> None:
    """The parent's half: spawned workers inherit the environment."""
    os.environ[SETTINGS_ENV] = msgspec.json.encode(settings).decode()


def _settings() -> WorkerSettings:
    return msgspec.json.decode(os.environ[SETTINGS_ENV], type=WorkerSettings)


class WorkerHeaderDeadline(HeaderDeadline):
    """Importable by name in the workers (uvicorn pickles the protocol class for them)."""

    header_timeout = _settings().header_timeout if SETTINGS_ENV in os.environ else HeaderDeadline.header_timeout


def worker_app() -> Litestar:
    """uvicorn's app factory, called once in each worker process."""
    settings = _settings()
    configure_logging(os.environ.get("LOUPE_LOG_FORMAT", "text"), os.environ.get("LOUPE_LOG_LEVEL", "info"))
    loupe = Loupe(config_from_env(data_dir=settings.data_dir, torch_threads=settings.threads,
                                  runtime=settings.runtime, precision=settings.precision,
                                  url_allow_hosts=tuple(settings.url_allow_hosts)))
    loupe.backbones.get(DEFAULT_BACKBONE)  # loaded before the first request, as in one-process serving
    app = create_app(loupe, max_body_bytes=settings.max_body_bytes, public_url=settings.public_url)
    if settings.metrics_bind:  # every worker tries; the first to bind answers for all of them
        app.state.metrics.serve(str(settings.metrics_bind[0]), int(settings.metrics_bind[1]))
    app.on_shutdown.append(lambda: loupe.close())  # indexes saved, LMDB closed on a clean stop
    return app
