"""Which embedders (backbone + runtime/precision, e.g. "openvino/bf16") wrote a backbone's vectors: vectors
are shared by content across apps, so an app whose inputs all reuse another app's vectors learns its
embedders from here. The reads and writes the transactions gain from this mixin."""

from __future__ import annotations

from typing import Any

import msgspec

from loupe.store import keys as K


class ProvenanceReads:
    """Mixed into ReadTxn (which provides `_get`)."""

    _get: Any

    def backbone_embedders(self, backbone: str) -> list[str]:
        raw = self._get("counters", K.join("embedders", backbone))
        return [] if raw is None else msgspec.msgpack.decode(raw, type=list[str])


class ProvenanceWrites(ProvenanceReads):
    """Mixed into WriteTxn (which provides `_put`)."""

    _put: Any

    def add_backbone_embedder(self, backbone: str, embedder: str) -> None:
        known = self.backbone_embedders(backbone)
        if embedder not in known:
            self._put("counters", K.join("embedders", backbone), msgspec.msgpack.encode([*known, embedder]))
