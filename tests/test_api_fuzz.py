"""Fuzz every operation of the OpenAPI schema with schemathesis (bounded): whatever the body, path and
query, the answer is never a 5xx and always Clarifai-style JSON."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from loupe.application import Loupe
from loupe.config import Config
from loupe.service.app import create_app

_DIR = Path(tempfile.mkdtemp(prefix="loupe-fuzz-"))
_LOUPE = Loupe(Config(data_dir=_DIR, auto_retrain=False))
_LOUPE.apps.create("fuzz")
KEY = _LOUPE.keys.create("fuzz")
APP = create_app(_LOUPE, max_body_bytes=1024 * 1024)
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx(case):
    response = case.call(headers={"Authorization": f"Key {KEY}"})
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])
    kind = response.headers.get("content-type") or ""
    kind = kind[0] if isinstance(kind, list) else kind  # schemathesis 4 keeps header values as lists
    if kind.startswith("application/json"):
        body = response.json()
        if response.status_code >= 400:
            assert body["status"]["description"], body
