"""Backbone ids -> loaded backbones. Loading is slow, so the application object caches them."""

from __future__ import annotations

import logging
import threading
import time

from loupe.backbones.base import Backbone, TorchBackbone
from loupe.backbones.runtimes.cpu import resolve_precision
from loupe.config import Config
from loupe.errors import BackboneUnavailable

BACKBONE_IDS = ("effnet-lite2", "effnet-lite0", "clip-vit-b-32")
DEFAULT_BACKBONE = "effnet-lite2"  # the one that always works offline; CLIP where its weights can be had

log = logging.getLogger(__name__)


RUNTIMES = ("openvino", "torch")


def load_backbone(backbone_id: str, config: Config) -> Backbone:
    """The one place that chooses what runs a backbone: the configured runtime, else torch."""
    if backbone_id not in BACKBONE_IDS:
        raise BackboneUnavailable(f"unknown backbone {backbone_id!r}; known: {', '.join(BACKBONE_IDS)}")
    if config.runtime not in RUNTIMES:
        raise BackboneUnavailable(f"unknown runtime {config.runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if config.runtime == "openvino":
        from loupe.backbones.compiled import RuntimeUnavailable, load_compiled

        try:
            return load_compiled(backbone_id, config, lambda: load_torch(backbone_id, config))
        except RuntimeUnavailable as exc:
            log.warning("%s: running %s with torch", exc, backbone_id)
    return load_torch(backbone_id, config)


def load_torch(backbone_id: str, config: Config) -> TorchBackbone:
    import torch

    torch.set_num_threads(config.torch_threads)
    bf16 = resolve_precision(config.precision) == "bf16"
    if backbone_id in ("effnet-lite2", "effnet-lite0"):
        from loupe.backbones.effnet_lite import EfficientNetLite

        return EfficientNetLite(backbone_id.removeprefix("effnet-"), bf16=bf16)
    if backbone_id == "clip-vit-b-32":
        from loupe.backbones.clip import ClipBackbone

        return ClipBackbone(config.weights.get(backbone_id, config.clip_pretrained_tag), bf16=bf16)
    raise BackboneUnavailable(f"unknown backbone {backbone_id!r}; known: {', '.join(BACKBONE_IDS)}")


class BackboneCache:
    """Loads each backbone once, on first use, and shares it between apps.

    Each backbone loads under its own lock: a first CLIP load (seconds) does not stall requests of
    apps on an EfficientNet that is already loaded. Backbones unused for `backbone_idle_seconds` are
    dropped (the default one stays), and load again when next needed.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._loaded: dict[str, Backbone] = {}
        self._last_used: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()  # held only to look up or add a lock or an entry, never to load
        self._next_sweep = 0.0

    def get(self, backbone_id: str) -> Backbone:
        now = time.monotonic()
        loaded = self._loaded.get(backbone_id)
        if loaded is None:
            with self._guard:
                lock = self._locks.setdefault(backbone_id, threading.Lock())
            with lock:
                loaded = self._loaded.get(backbone_id)
                if loaded is None:
                    loaded = load_backbone(backbone_id, self._config)
                    with self._guard:
                        self._loaded[backbone_id] = loaded
        self._last_used[backbone_id] = now
        if now >= self._next_sweep:  # every request asks for its backbone: look for idle ones once a minute
            self._next_sweep = now + 60.0
            self.unload_idle(now)
        return loaded

    def unload_idle(self, now: float | None = None) -> list[str]:
        """Drop backbones idle for longer than the configured time (not the default). Requests that
        hold one keep it until they finish; memory goes back when the last reference does."""
        now = time.monotonic() if now is None else now
        limit = self._config.backbone_idle_seconds
        with self._guard:
            idle = [b for b, t in self._last_used.items()
                    if b != DEFAULT_BACKBONE and b in self._loaded and now - t > limit]
            for backbone_id in idle:
                del self._loaded[backbone_id]
        return idle

    def loaded_ids(self) -> list[str]:
        return list(self._loaded)
