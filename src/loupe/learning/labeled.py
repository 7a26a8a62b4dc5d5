"""The labels of an app's inputs as learning reads them: per input sequence number, its positive and
negative concepts (the apps package keeps this mirror level with LMDB)."""

from __future__ import annotations

import msgspec


class LabelEntry(msgspec.Struct, frozen=True):
    input_id: str
    positives: frozenset[str]
    negatives: frozenset[str]
    sha256: str = ""  # what the input's vector is stored under: trains read vectors with one lookup


class AppLabels:
    def __init__(self) -> None:
        self.entries: dict[int, LabelEntry] = {}
        self.version = 0  # bumped on every change; caches derived from the labels key on it

    def put(self, seq: int, entry: LabelEntry) -> None:
        self.entries[seq] = entry
        self.version += 1

    def remove(self, seq: int) -> None:
        if self.entries.pop(seq, None) is not None:
            self.version += 1
