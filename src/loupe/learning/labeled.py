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
        # Content hash -> the oldest input holding it: uploads find a copy already stored in O(1)
        # (~40 bytes per input beside the entry itself, measured on 200,000: 40 MB at a million).
        self._by_sha: dict[str, int] = {}
        self._copies: dict[str, int] = {}  # further inputs with a held hash (explicit ids may repeat content)

    def put(self, seq: int, entry: LabelEntry) -> None:
        known = self.entries.get(seq)
        self.entries[seq] = entry
        self.version += 1
        sha = entry.sha256
        if not sha or known is not None:  # an edit: the content never changes
            return
        holder = self._by_sha.get(sha)
        if holder is None:
            self._by_sha[sha] = seq
            return
        self._copies[sha] = self._copies.get(sha, 0) + 1
        self._by_sha[sha] = min(holder, seq)

    def remove(self, seq: int) -> None:
        entry = self.entries.pop(seq, None)
        if entry is None:
            return
        self.version += 1
        sha = entry.sha256
        copies = self._copies.get(sha, 0)
        if copies:  # rare: only content stored more than once costs a scan
            self._copies[sha] = copies - 1
            if not self._copies[sha]:
                del self._copies[sha]
            if self._by_sha.get(sha) == seq:
                self._by_sha[sha] = min(s for s, e in self.entries.items() if e.sha256 == sha)
        elif self._by_sha.get(sha) == seq:
            del self._by_sha[sha]

    def holding(self, sha256: str) -> LabelEntry | None:
        """The oldest input whose image has this content hash, if any."""
        seq = self._by_sha.get(sha256)
        return None if seq is None else self.entries[seq]
