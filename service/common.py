"""Helpers shared by the route modules."""

from __future__ import annotations

import base64
import binascii
import re
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

from litestar import Request

from loupe.application import Loupe
from loupe.imaging import crop_fraction
from loupe.service.clarifai_json import OK, input_json
from loupe.service.errors import ApiError
from loupe.service.wire import WConcept, WImage
from loupe.store.records import Input


def ok(**fields: Any) -> dict[str, Any]:
    return {"status": OK, **fields}


def concept_names(loupe: Loupe, app_id: str) -> dict[str, str]:
    return loupe.concept_names(app_id)


def image_url(request: Request, input_id: str) -> str:
    """From the configured public base URL, never from the request's Host header; the id is escaped."""
    base: str = request.app.state.public_url
    return f"{base}/v2/inputs/{urllib.parse.quote(input_id, safe='')}/image"


def inputs_json(request: Request, loupe: Loupe, app_id: str, records: Iterable[Input]) -> list[dict[str, Any]]:
    names = concept_names(loupe, app_id)
    return [input_json(r, app_id, r.source if r.source.startswith(("http://", "https://"))
                       else image_url(request, r.id), names) for r in records]


_WHITESPACE = re.compile(rb"\s+")


def request_deadline(loupe: Loupe) -> float:
    """When a request's URL downloads must be done, together (time.monotonic)."""
    return time.monotonic() + loupe.config.url_request_seconds


def image_bytes(loupe: Loupe, image: WImage | None, position: int = 0, deadline: float | None = None) -> bytes:
    """The bytes of data.image: base64 decoded, or fetched from its URL under the SSRF policy."""
    if image is None or not (image.base64 or image.url):
        raise ApiError(400, 11102, f"input {position} has no image: give data.image.base64 or data.image.url")
    if image.base64:
        # Wrapped base64 (76-column MIME lines) is accepted, as Clarifai does: white space is dropped.
        raw = _WHITESPACE.sub(b"", image.base64.encode("ascii", "replace"))
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, 11102, f"input {position}: data.image.base64 is not valid base64") from None
    else:
        data = loupe.urls.fetch(image.url, deadline)
    return crop_fraction(data, image.crop, loupe.config.images) if image.crop else data


def concept_ref(loupe: Loupe, app_id: str, concept: WConcept) -> str:
    """Concepts are referenced by id; a name alone is looked up (exact, then case-insensitive)."""
    if concept.id:
        return concept.id
    if not concept.name:
        raise ApiError(400, 11102, "a concept needs an id or a name")
    names = concept_names(loupe, app_id)
    for cid, name in names.items():
        if name == concept.name:
            return cid
    for cid, name in names.items():
        if name.lower() == concept.name.lower():
            return cid
    return concept.name  # unknown name: used as the id (created on the fly when labeling)


def split_concepts(loupe: Loupe, app_id: str, concepts: list[WConcept]) -> tuple[list[str], list[str]]:
    positive = [concept_ref(loupe, app_id, c) for c in concepts if c.positive]
    negative = [concept_ref(loupe, app_id, c) for c in concepts if not c.positive]
    return positive, negative
