"""Clarifai v2 request bodies as msgspec Structs. Unknown fields are ignored (clients send extras);
missing fields take proto defaults (false, 0, empty), as the Python client leaves them out."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from loupe.service.errors import ApiError

T = TypeVar("T")


class WImage(msgspec.Struct, omit_defaults=True):
    url: str | None = None
    base64: str | None = None
    crop: list[float] | None = None
    allow_duplicate_url: bool = False


class WText(msgspec.Struct):
    raw: str = ""


class WVideo(msgspec.Struct):
    url: str | None = None
    base64: str | None = None


class WGeoPoint(msgspec.Struct):
    longitude: float
    latitude: float


class WGeoLimit(msgspec.Struct):
    type: str = "withinMiles"
    value: float = 10.0


class WGeoBoxedPoint(msgspec.Struct):
    geo_point: WGeoPoint


class WGeo(msgspec.Struct):
    geo_point: WGeoPoint | None = None
    geo_limit: WGeoLimit | None = None
    geo_box: list[WGeoBoxedPoint] = []


class WBoundingBox(msgspec.Struct):
    top_row: float = 0.0
    left_col: float = 0.0
    bottom_row: float = 0.0
    right_col: float = 0.0


class WRegionInfo(msgspec.Struct):
    bounding_box: WBoundingBox | None = None


class WConcept(msgspec.Struct):
    id: str | None = None
    name: str | None = None
    value: float | bool | None = None  # absent means positive (JS); 0/false means "not this concept"

    @property
    def positive(self) -> bool:
        return self.value is None or bool(self.value)


class WRegionData(msgspec.Struct):
    concepts: list[WConcept] = []


class WRegion(msgspec.Struct):
    id: str | None = None
    region_info: WRegionInfo = msgspec.field(default_factory=WRegionInfo)
    data: WRegionData = msgspec.field(default_factory=WRegionData)


class WData(msgspec.Struct):
    image: WImage | None = None
    video: WVideo | None = None
    text: WText | None = None
    concepts: list[WConcept] = []
    metadata: dict[str, Any] | None = None
    geo: WGeo | None = None
    regions: list[WRegion] | None = None


class WInput(msgspec.Struct):
    id: str | None = None
    data: WData = msgspec.field(default_factory=WData)


class PostInputs(msgspec.Struct):
    inputs: list[WInput] = []


class PatchInputs(msgspec.Struct):
    inputs: list[WInput] = []
    action: str = "merge"


class DeleteMany(msgspec.Struct):
    ids: list[str] = []
    delete_all: bool = False


class PostConcepts(msgspec.Struct):
    concepts: list[WConcept] = []


class PatchConcepts(msgspec.Struct):
    concepts: list[WConcept] = []
    action: str = "overwrite"


class WOutputConfig(msgspec.Struct):
    # None: not sent (the Python client leaves false out), so a PATCH keeps the current setting.
    concepts_mutually_exclusive: bool | None = None
    closed_environment: bool | None = None
    min_value: float = 0.0
    max_concepts: int = 0
    select_concepts: list[WConcept] = []
    language: str = ""
    hyper_params: dict[str, Any] | None = None
    sample_ms: int = 0  # video: one frame every sample_ms (Clarifai's default: one a second)


class WOutputInfo(msgspec.Struct):
    data: WData = msgspec.field(default_factory=WData)
    output_config: WOutputConfig = msgspec.field(default_factory=WOutputConfig)


class WModelLoupe(msgspec.Struct):
    """Loupe's fields of a model, beside Clarifai's: serving policy, publishing, threshold targets."""

    serving: str | None = None  # "latest" | "published"
    published_version_id: str | None = None  # PATCH: publish this version
    target_precision: float | None = None
    concept_precision: dict[str, float] | None = None


class WModel(msgspec.Struct):
    id: str | None = None
    name: str | None = None
    output_info: WOutputInfo | None = None
    loupe: WModelLoupe | None = None


class PostModel(msgspec.Struct):
    model: WModel = msgspec.field(default_factory=WModel)


class PatchModels(msgspec.Struct):
    models: list[WModel] = []
    action: str = "merge"


class PostOutputs(msgspec.Struct):
    inputs: list[WInput] = []
    model: WModel | None = None


class WPagination(msgspec.Struct):
    page: int = 1
    per_page: int = 20


class PostWorkflowResults(msgspec.Struct):
    inputs: list[WInput] = []
    output_config: WOutputConfig = msgspec.field(default_factory=WOutputConfig)


class WOutput(msgspec.Struct):
    input: WInput | None = None
    data: WData | None = None


class WAnd(msgspec.Struct):
    input: WInput | None = None
    output: WOutput | None = None


class WQuery(msgspec.Struct):
    ands: list[WAnd] = []
    language: str = ""


class PostSearches(msgspec.Struct):
    query: WQuery = msgspec.field(default_factory=WQuery)
    pagination: WPagination = msgspec.field(default_factory=WPagination)


class WConceptQuery(msgspec.Struct):
    name: str = ""


class PostConceptSearches(msgspec.Struct):
    concept_query: WConceptQuery = msgspec.field(default_factory=WConceptQuery)
    pagination: WPagination = msgspec.field(default_factory=WPagination)


class WModelQuery(msgspec.Struct):
    name: str = ""
    type: str = ""


class PostModelSearches(msgspec.Struct):
    model_query: WModelQuery = msgspec.field(default_factory=WModelQuery)


MAX_JSON_DEPTH = 64


def decode(raw: bytes, kind: type[T]) -> T:
    """Empty bodies mean {} (the JS client trains with no body). Errors say what was wrong."""
    if not raw.strip():
        raw = b"{}"
    if _depth(raw) > MAX_JSON_DEPTH:
        raise ApiError(400, 11102, f"request JSON is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, 11102, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, 11100, f"request body is not valid JSON: {exc}") from None


def _depth(raw: bytes) -> int:
    """Upper bound of nesting depth, counted on brackets outside strings (cheap, before decoding)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest
