"""Embed once: vectors are looked up by (backbone id, content hash) before any image is embedded."""

from __future__ import annotations

import numpy as np

from loupe.backbones.base import Backbone
from loupe.imaging import DecodedImage
from loupe.store import Store


class Embedded:
    """Vectors for a batch of images, plus those that were new (to be stored with the inputs)."""

    def __init__(self, vectors: np.ndarray, new: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.new = new


def embed_once(store: Store, backbone: Backbone, images: list[DecodedImage]) -> Embedded:
    vectors: dict[str, np.ndarray] = {}
    with store.read() as tx:
        for img in images:
            if img.sha256 not in vectors:
                cached = tx.get_embedding(backbone.id, img.sha256)
                if cached is not None and cached.shape[0] == backbone.dim:
                    vectors[img.sha256] = cached
    todo: dict[str, DecodedImage] = {}
    for img in images:
        if img.sha256 not in vectors:
            todo.setdefault(img.sha256, img)
    new: dict[str, np.ndarray] = {}
    if todo:
        fresh = backbone.embed([img.image for img in todo.values() if img.image is not None])
        if len(fresh) != len(todo):
            raise ValueError("images to embed must still hold their pixels")
        new = dict(zip(todo, fresh))
        vectors.update(new)
    stacked = np.stack([vectors[img.sha256] for img in images]) if images else np.zeros((0, backbone.dim), np.float32)
    return Embedded(stacked.astype(np.float32, copy=False), new)
