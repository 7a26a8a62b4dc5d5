"""A search request as the core takes it: at most one thing to look like, narrowed by filters."""

from __future__ import annotations

from typing import Any

import msgspec

from loupe.store.filters import ConceptFilter
from loupe.store.geo import GeoQuery


class PredictedConcept(msgspec.Struct, frozen=True):
    concept_id: str
    positive: bool = True  # False: inputs the model predicts NOT to be this concept
    name: str = ""  # matched by text (CLIP apps) when no trained model knows the concept


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    """One search: at most one thing to look like (image bytes, a stored input or text), narrowed by
    annotated concepts, metadata and predicted concepts."""

    image: bytes | None = None
    input_id: str | None = None
    text: str | None = None
    concepts: tuple[ConceptFilter, ...] = ()
    metadata: dict[str, Any] = {}
    predicted: tuple[PredictedConcept, ...] = ()
    geo: tuple[GeoQuery, ...] = ()
    input_ids: tuple[str, ...] = ()
    source_urls: tuple[str, ...] = ()
    crop: tuple[float, ...] = ()  # with input_id: look like this part of the stored input's image
    page: int = 1
    per_page: int = 20


MAX_PREDICTED_CONCEPTS = 8  # distinct (concept, value) pairs per search; each may score a whole app
