"""Helpers shared by the route modules."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from litestar import Request
from loupe.service.clarifai_json import OK, input_json
from loupe.service.errors import ApiError
from loupe.service.wire import WConcept, WImage

from loupe.application import Loupe
from loupe.imaging import crop_fraction
from loupe.url_fetch import UrlPolicy, fetch_image


def ok(**fields: Any) -> dict[str, Any]:
    return {"status": OK, **fields}


def concept_names(loupe: Loupe, app_id: str) -> dict[str, str]:
    return loupe.concept_names(app_id)


def image_url(request: Request, input_id: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/v2/inputs/{input_id}/image"


def inputs_json(request: Request, loupe: Loupe, app_id: str, records) -> list[dict[str, Any]]:
    names = concept_names(loupe, app_id)
    return [input_json(r, app_id, r.source if r.source.startswith(("http://", "https://"))
                       else image_url(request, r.id), names) for r in records]


def image_bytes(loupe: Loupe, image: WImage | None, position: int = 0) -> bytes:
    """The bytes of data.image: base64 decoded, or fetched from its URL under the SSRF policy."""
    if image is None or not (image.base64 or image.url):
        raise ApiError(400, 11102, f"input {position} has no image: give data.image.base64 or data.image.url")
    if image.base64:
        try:
            data = base64.b64decode(image.base64, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, 11102, f"input {position}: data.image.base64 is not valid base64") from None
    else:
        cfg = loupe.config
        policy = UrlPolicy(timeout_seconds=cfg.url_timeout_seconds, max_bytes=cfg.images.max_bytes,
                           allow_hosts=tuple(cfg.url_allow_hosts))
        data = fetch_image(image.url, policy)
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
