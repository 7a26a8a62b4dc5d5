"""Records kept in LMDB, msgspec-encoded. Adding a field with a default keeps old records readable."""

from __future__ import annotations

from typing import Any

import msgspec


class App(msgspec.Struct, kw_only=True):
    id: str
    backbone: str
    created_at: float
    # Input sequence numbers are never reused: they are the vector-index ids and the list order.
    next_seq: int = 1


class Input(msgspec.Struct, kw_only=True):
    id: str
    seq: int
    sha256: str
    source: str = ""
    metadata: dict[str, Any] = {}
    concepts: list[str] = []
    not_concepts: list[str] = []
    created_at: float
    width: int = 0
    height: int = 0


class Concept(msgspec.Struct, kw_only=True):
    id: str
    name: str
    created_at: float
