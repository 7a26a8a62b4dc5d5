"""Backbone ids -> loaded backbones. Loading is slow, so the application object caches them."""

from __future__ import annotations

import threading

from loupe.backbones.base import Backbone
from loupe.config import Config
from loupe.errors import BackboneUnavailable

BACKBONE_IDS = ("effnet-lite2", "effnet-lite0", "clip-vit-b-32")
DEFAULT_BACKBONE = "effnet-lite2"  # the one that always works offline; CLIP where its weights can be had


def load_backbone(backbone_id: str, config: Config) -> Backbone:
    import torch

    torch.set_num_threads(config.torch_threads)
    if backbone_id in ("effnet-lite2", "effnet-lite0"):
        from loupe.backbones.effnet_lite import EfficientNetLite

        return EfficientNetLite(backbone_id.removeprefix("effnet-"))
    if backbone_id == "clip-vit-b-32":
        from loupe.backbones.clip import ClipBackbone

        return ClipBackbone(config.weights.get(backbone_id, config.clip_pretrained_tag))
    raise BackboneUnavailable(f"unknown backbone {backbone_id!r}; known: {', '.join(BACKBONE_IDS)}")


class BackboneCache:
    """Loads each backbone once, on first use, and shares it between apps."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._loaded: dict[str, Backbone] = {}
        self._lock = threading.Lock()

    def get(self, backbone_id: str) -> Backbone:
        with self._lock:
            if backbone_id not in self._loaded:
                self._loaded[backbone_id] = load_backbone(backbone_id, self._config)
            return self._loaded[backbone_id]

    def loaded_ids(self) -> list[str]:
        return list(self._loaded)
