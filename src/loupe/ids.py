"""Validation and generation of the user-visible ids (apps, inputs, concepts)."""

from __future__ import annotations

import uuid

from loupe.errors import InvalidArgument

MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 256


def new_id() -> str:
    return uuid.uuid4().hex


def _utf8_length(kind: str, what: str, value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(f"{kind} {what} is not valid Unicode (a lone surrogate)") from None


def check_id(kind: str, value: object) -> str:
    """An id is 1-128 bytes of UTF-8, printable, any script, without '/' (it travels in URL paths).
    Bytes, not characters: LMDB keys join ids and must stay under 511 bytes (128 emoji are 512)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{kind} id must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{kind} id must not be empty")
    size = _utf8_length(kind, "id", value)
    if size > MAX_ID_LENGTH:
        raise InvalidArgument(f"{kind} id is {size} bytes long in UTF-8, limit is {MAX_ID_LENGTH}")
    if value in (".", "..") or "/" in value or "\\" in value:
        raise InvalidArgument(f"{kind} id {value!r} may not contain '/' or '\\' or be '.' or '..'")
    if not value.isprintable():
        raise InvalidArgument(f"{kind} id {value!r} contains control or non-printable characters")
    if value != value.strip():
        raise InvalidArgument(f"{kind} id {value!r} has leading or trailing white space")
    return value


def check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{kind} name must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH or _utf8_length(kind, "name", value) > 4 * MAX_NAME_LENGTH:
        raise InvalidArgument(f"{kind} name is {len(value)} characters long, limit is {MAX_NAME_LENGTH}")
    if "\x00" in value:
        raise InvalidArgument(f"{kind} name contains a NUL character")
    return value
