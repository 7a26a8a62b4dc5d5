"""Helpers shared by the route modules."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

import msgspec
from litestar import Request, Response

from loupe.application import Loupe
from loupe.ids import new_id
from loupe.intake.embedding import VideoClip
from loupe.intake.imaging import crop_fraction
from loupe.learning.prediction import Prediction
from loupe.models.predictions import InputAnswer
from loupe.service.clarifai_json import OK, input_json, prediction_concepts
from loupe.service.errors import ApiError
from loupe.service.request_ids import with_request_id
from loupe.service.wire import WConcept, WData, WImage, WInput, WOutputConfig, WRegion, WVideo
from loupe.store.geo import check_point
from loupe.store.records import BoundingBox, GeoPoint, Input, ModelVersion, Region, RegionConcept

DEFAULT_MAX_CONCEPTS = 20  # Clarifai's default


def ok(**fields: Any) -> dict[str, Any]:
    return {"status": with_request_id(OK), **fields}


# A request for advice or suggestions waits this long for the job computing them, then answers 202
# (Loupe's status 21310, "computing") with Retry-After: the job goes on and its answer is kept, so the
# retry reads it. The wait is awaited, so it holds no worker thread.
COMPUTE_WAIT_SECONDS = 20.0
COMPUTING = {"code": 21310, "description": "Computing: the answer is being computed; ask again shortly"}


async def computed(future: Future, answer: Callable[[Any], dict[str, Any]]) -> dict[str, Any] | Response:
    try:
        result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), COMPUTE_WAIT_SECONDS)
    except TimeoutError:
        return Response({"status": with_request_id(COMPUTING), "pending": True}, status_code=202,
                        headers={"Retry-After": "2"})
    return answer(result)


def concept_names(loupe: Loupe, app_id: str) -> dict[str, str]:
    return loupe.concepts.names(app_id)


def app_base(request: Request) -> str:
    """The /v2 base of the request's app routes, from the configured public URL (never the Host header):
    /v2 for an app key, /v2/users/me/apps/{app} where the path named the app."""
    base: str = request.app.state.public_url
    app_id = request.path_params.get("app_id")
    return f"{base}/v2/users/me/apps/{urllib.parse.quote(app_id, safe='')}" if app_id else f"{base}/v2"


def image_url(request: Request, input_id: str) -> str:
    return f"{app_base(request)}/inputs/{urllib.parse.quote(input_id, safe='')}/image"


def stored_image_url(request: Request, record: Input) -> str:
    """Where a stored input's image is: the URL it was added from, else this server's image route."""
    return record.source if record.source.startswith(("http://", "https://")) else image_url(request, record.id)


def inputs_json(request: Request, loupe: Loupe, app_id: str, records: Iterable[Input]) -> list[dict[str, Any]]:
    names = concept_names(loupe, app_id)
    return [input_json(r, app_id, stored_image_url(request, r), names) for r in records]


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


def video_bytes(loupe: Loupe, video: WVideo, position: int, deadline: float) -> bytes:
    """The bytes of data.video: base64 decoded, or fetched under the URL policy with the video byte limit."""
    if video.base64:
        return image_bytes(loupe, WImage(base64=video.base64), position, deadline)
    if video.url:
        return loupe.urls.fetch(video.url, deadline, max_bytes=loupe.config.videos.max_bytes, kind="video")
    raise ApiError(400, 11102, f"input {position} has no video: give data.video.base64 or data.video.url")


def predict_items(loupe: Loupe, inputs: list[WInput], sample_ms: int, deadline: float) -> list[str | bytes | VideoClip]:
    """What each wire input asks to predict: a stored input (by id alone), a new image, or a video."""
    items: list[str | bytes | VideoClip] = []
    for i, w in enumerate(inputs):
        image, video = w.data.image, w.data.video
        if video is not None and (video.base64 or video.url):
            items.append(VideoClip(video_bytes(loupe, video, i, deadline), sample_ms))
        elif w.id and not (image and (image.base64 or image.url)):
            items.append(w.id)
        else:
            items.append(image_bytes(loupe, image, i, deadline))
    return items


def echoed_media(request: Request, loupe: Loupe, app_id: str, wire_input: WInput,
                 item: str | bytes | VideoClip) -> dict[str, Any]:
    """The input of a predict output, always as a URL (Clarifai's 2017 Java and iOS clients read an
    image only by URL): the stored input's, the one sent, or a link to the image kept for an hour."""
    if isinstance(item, VideoClip):
        url = wire_input.data.video.url if wire_input.data.video else None
        return {"video": {"url": url} if url else {}}
    if isinstance(item, str):
        return {"image": {"url": stored_image_url(request, loupe.inputs.get(app_id, item))}}
    image = wire_input.data.image
    if image is not None and image.url:
        return {"image": {"url": image.url}}
    sha = loupe.inputs.remember_predicted(app_id, item)
    return {"image": {"url": f"{app_base(request)}/loupe/recent-images/{sha}"}}


class OutputShape(msgspec.Struct, frozen=True):
    """Clarifai's output_config filters of an answer's concepts."""

    max_concepts: int = DEFAULT_MAX_CONCEPTS
    min_value: float = 0.0
    select: frozenset[str] | None = None

    @classmethod
    def of(cls, loupe: Loupe, app_id: str, config: WOutputConfig) -> OutputShape:
        if config.max_concepts < 0 or config.max_concepts > 1000:
            raise ApiError(400, 11102, f"output_config.max_concepts must be within 0..1000, got {config.max_concepts}")
        if not 0.0 <= config.min_value <= 1.0:
            raise ApiError(400, 11102, f"output_config.min_value must be within 0..1, got {config.min_value}")
        select = (frozenset(concept_ref(loupe, app_id, c) for c in config.select_concepts)
                  if config.select_concepts else None)
        return cls(config.max_concepts or DEFAULT_MAX_CONCEPTS, config.min_value, select)

    def concepts(self, prediction: Prediction, app_id: str, names: dict[str, str]) -> list[dict[str, Any]]:
        return prediction_concepts(prediction, app_id, names, max_concepts=self.max_concepts,
                                   min_value=self.min_value, select=self.select)


def _scored(prediction: Prediction | None, embedding: Any, shape: OutputShape, app_id: str,
            names: dict[str, str]) -> dict[str, Any]:
    if prediction is None:  # the embedding model
        vector = [round(float(v), 7) for v in embedding]
        return {"embeddings": [{"vector": vector, "num_dimensions": len(vector)}]}
    return {"concepts": shape.concepts(prediction, app_id, names)}


def prediction_loupe(prediction: Prediction, version: ModelVersion) -> dict[str, Any]:
    """Loupe's object beside a custom model's output `data`: neighbours, thresholds and the verdict."""
    out: dict[str, Any] = {
        "neighbours": [{"input_id": n.input_id, "similarity": round(n.similarity, 5), "weight": round(n.weight, 5)}
                       for n in prediction.neighbours],
        "verdict": prediction.verdict.value, "met": list(prediction.met),
        "nearest_example": None if prediction.nearest_example is None else round(prediction.nearest_example, 5)}
    if version.thresholds:
        out["thresholds"] = [{"concept_id": t.concept_id, "threshold": t.threshold, "precision": t.precision,
                              "met": t.concept_id in prediction.met} for t in version.thresholds]
        out["scope_similarity"] = version.scope_similarity
    return out


def answer_data(result: InputAnswer, shape: OutputShape, app_id: str, names: dict[str, str]) -> dict[str, Any]:
    """An output's `data` exactly as Clarifai's: concepts, embeddings, or a video's frames."""
    if result.frames:
        return {"frames": [{"frame_info": {"index": f.index, "time": f.time_ms},
                            "data": _scored(f.prediction, f.embedding, shape, app_id, names)} for f in result.frames]}
    return _scored(result.prediction, result.embedding, shape, app_id, names)


def stored_geo(data: WData) -> GeoPoint | None:
    """An input's data.geo.geo_point, checked (a point to store, not a search)."""
    if data.geo is None or data.geo.geo_point is None:
        return None
    return check_point(data.geo.geo_point.longitude, data.geo.geo_point.latitude)


def stored_regions(loupe: Loupe, app_id: str, regions: list[WRegion] | None) -> list[Region] | None:
    """data.regions as stored: each with an id (made when missing), its box and its concepts."""
    if regions is None:
        return None
    out = []
    for r in regions:
        box = r.region_info.bounding_box
        if box is None:
            raise ApiError(400, 11102, "each region needs region_info.bounding_box")
        out.append(Region(id=r.id or new_id(),
                          box=BoundingBox(top_row=box.top_row, left_col=box.left_col, bottom_row=box.bottom_row,
                                          right_col=box.right_col),
                          concepts=[RegionConcept(concept_ref(loupe, app_id, c),
                                                  1.0 if c.value is None else float(c.value))
                                    for c in r.data.concepts]))
    return out
