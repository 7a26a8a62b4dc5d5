"""Concept and metadata edits on one input: merge, remove, overwrite (Clarifai's PATCH actions)."""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import msgspec

from loupe.errors import InvalidArgument
from loupe.ids import check_id
from loupe.store.records import GeoPoint, Input, Region


class EditAction(str, Enum):
    MERGE = "merge"
    REMOVE = "remove"
    OVERWRITE = "overwrite"


class InputEdit(msgspec.Struct, kw_only=True):
    input_id: str
    concepts: list[str] = []  # positive annotations
    not_concepts: list[str] = []  # explicit negatives
    metadata: dict[str, Any] | None = None
    geo: GeoPoint | None = None  # merge/overwrite: set it; remove: drop it
    regions: list[Region] | None = None  # merge: by region id; remove: those ids; overwrite: these


MAX_REGIONS = 100  # per input


def check_regions(regions: list[Region]) -> list[Region]:
    """At most MAX_REGIONS, unique ids, boxes inside the image with top < bottom and left < right."""
    if len(regions) > MAX_REGIONS:
        raise InvalidArgument(f"an input may have at most {MAX_REGIONS} regions, got {len(regions)}")
    ids = [r.id for r in regions]
    if len(set(ids)) != len(ids):
        raise InvalidArgument("region ids must be unique within an input")
    for region in regions:
        check_id("region", region.id)
        b = region.box
        values = (b.top_row, b.left_col, b.bottom_row, b.right_col)
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values) or b.top_row >= b.bottom_row \
                or b.left_col >= b.right_col:
            raise InvalidArgument(f"region {region.id!r}: bounding_box needs fractions in 0..1 with top_row < "
                                  f"bottom_row and left_col < right_col, got {list(values)}")
        for concept in region.concepts:
            check_id("concept", concept.id)
            if not (math.isfinite(concept.value) and 0.0 <= concept.value <= 1.0):
                raise InvalidArgument(f"region {region.id!r}: concept values must be within 0..1")
    return regions


def _edited_regions(current: list[Region], action: EditAction, given: list[Region] | None) -> list[Region]:
    if given is None:
        return current
    if action is EditAction.MERGE:
        replaced = {r.id: r for r in given}
        return [replaced.pop(r.id, r) for r in current] + list(replaced.values())
    if action is EditAction.REMOVE:
        gone = {r.id for r in given}
        return [r for r in current if r.id not in gone]
    return list(given)


MAX_METADATA_BYTES = 64 * 1024


def check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata must be storable: integers within 64 bits, text without lone surrogates, at most 64 KiB."""
    try:
        size = len(msgspec.msgpack.encode(metadata))
    except OverflowError:
        raise InvalidArgument("metadata holds an integer outside the 64-bit range") from None
    except (UnicodeEncodeError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"metadata cannot be stored: {exc}") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument(f"metadata is {size} bytes encoded, limit is {MAX_METADATA_BYTES}")
    return metadata


def check_labels(concepts: list[str], not_concepts: list[str]) -> None:
    both = set(concepts) & set(not_concepts)
    if both:
        raise InvalidArgument(
            f"concept(s) {', '.join(sorted(both))} given as both positive and negative for one input"
        )


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def apply_edit(record: Input, action: EditAction, edit: InputEdit) -> Input:
    """The input as it is after the edit. `remove` matches concepts by id, whatever their value."""
    check_labels(edit.concepts, edit.not_concepts)
    if action is EditAction.MERGE:
        pos = [c for c in record.concepts if c not in edit.not_concepts] + edit.concepts
        neg = [c for c in record.not_concepts if c not in edit.concepts] + edit.not_concepts
        metadata = {**record.metadata, **(edit.metadata or {})}
    elif action is EditAction.REMOVE:
        gone = set(edit.concepts) | set(edit.not_concepts)
        pos = [c for c in record.concepts if c not in gone]
        neg = [c for c in record.not_concepts if c not in gone]
        metadata = {k: v for k, v in record.metadata.items() if k not in (edit.metadata or {})}
    elif action is EditAction.OVERWRITE:
        pos, neg = list(edit.concepts), list(edit.not_concepts)
        metadata = record.metadata if edit.metadata is None else dict(edit.metadata)
    else:  # pragma: no cover - Enum exhausts the cases
        raise InvalidArgument(f"unknown action {action!r}")
    geo = (None if edit.geo is not None else record.geo) if action is EditAction.REMOVE else (edit.geo or record.geo)
    return msgspec.structs.replace(record, concepts=_unique(pos), not_concepts=_unique(neg),
                                   metadata=check_metadata(metadata), geo=geo,
                                   regions=check_regions(_edited_regions(record.regions, action, edit.regions)))
