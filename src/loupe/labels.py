"""Concept and metadata edits on one input: merge, remove, overwrite (Clarifai's PATCH actions)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import msgspec

from loupe.errors import InvalidArgument
from loupe.store.records import Input


class EditAction(str, Enum):
    MERGE = "merge"
    REMOVE = "remove"
    OVERWRITE = "overwrite"


class InputEdit(msgspec.Struct, kw_only=True):
    input_id: str
    concepts: list[str] = []  # positive annotations
    not_concepts: list[str] = []  # explicit negatives
    metadata: dict[str, Any] | None = None


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
    return msgspec.structs.replace(record, concepts=_unique(pos), not_concepts=_unique(neg),
                                   metadata=check_metadata(metadata))
