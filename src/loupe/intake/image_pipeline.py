"""Bytes -> vectors, embedding each content once: decode and preprocess on a small thread pool (Pillow
and numpy release the GIL), then one network call per batch for the images with no stored vector.

Decoding and preprocessing are as slow as the network once the network is compiled (~3 ms each for
a Clothing-10 photo here), so a pool of decoders keeps the cores busy while the network runs, and
the import pipeline prepares the next batch while the current one is embedded.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec
import numpy as np

from loupe.backbones.base import Backbone
from loupe.config import ImageLimits
from loupe.errors import ImageError
from loupe.intake.imaging import DecodedImage, content_hash, decode_image
from loupe.intake.thumbnails import thumbnail_of
from loupe.store import Store


class Prepared(msgspec.Struct):
    """A batch made ready to embed: decoded (pixels dropped), and preprocessed where no vector exists."""

    decoded: list[DecodedImage]
    stored: dict[str, np.ndarray]  # sha256 -> vector already in the store
    stored_norms: dict[str, float]  # sha256 -> its feature norm, where the store has it
    arrays: dict[str, np.ndarray]  # sha256 -> preprocessed CHW array, to embed
    thumbnails: dict[str, bytes] = {}  # sha256 -> JPEG thumbnail, when asked for


class Embedded(msgspec.Struct):
    """Vectors for a batch, in order, plus those that were new (to be stored with the inputs)."""

    vectors: np.ndarray
    norms: np.ndarray  # each image's feature norm before normalising (NaN where not known)
    new: dict[str, np.ndarray]
    new_norms: dict[str, float]
    embedder: str  # runtime/precision that made the new ones
    seconds: float = 0.0  # spent in the backbone on the new ones


def draft_size(backbone: Backbone) -> int:
    """JPEGs may decode at reduced scale while the centre crop keeps 2x the network's input side."""
    p = backbone.preprocessing
    return math.ceil(2 * p.size / p.crop_pct)


class ImagePipeline:
    def __init__(self, store: Store | None, limits: ImageLimits, workers: int) -> None:
        """Without a store (e.g. on a Ray worker) every image is embedded."""
        self._store = store
        self._limits = limits
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="loupe-decode")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def prepare(self, backbone: Backbone, images: list[bytes], labels: list[str] | None = None, *,
                thumbnails: bool = False) -> Prepared:
        """`labels[i]` names image i in error messages (e.g. "input 3 (id)")."""
        hashes = [content_hash(data) for data in images]
        stored: dict[str, np.ndarray] = {}
        norms: dict[str, float] = {}
        if self._store is not None:
            with self._store.read() as tx:
                stored = {sha: v for sha in dict.fromkeys(hashes)
                          if (v := tx.get_embedding(backbone.id, sha)) is not None and v.shape[0] == backbone.dim}
                norms = {sha: n for sha in stored if (n := tx.get_feature_norm(backbone.id, sha)) is not None}
        first = {sha: i for i, sha in reversed(list(enumerate(hashes)))}  # one preprocess per content
        draft = draft_size(backbone)

        def one(i: int) -> tuple[DecodedImage, np.ndarray | None, bytes | None]:
            try:
                decoded = decode_image(images[i], self._limits, draft, hashes[i])
            except ImageError as exc:
                raise (exc.about(labels[i]) if labels else exc) from None
            array = small = None
            if decoded.sha256 not in stored and first[decoded.sha256] == i and decoded.image is not None:
                array = backbone.preprocess(decoded.image)
                # From the draft-decoded pixels already in hand: far cheaper than decoding again later.
                small = thumbnail_of(decoded.image) if thumbnails else None
            return msgspec.structs.replace(decoded, image=None), array, small

        done = list(self._pool.map(one, range(len(images)))) if len(images) > 1 else [one(0)] if images else []
        return Prepared(decoded=[d for d, _, _ in done], stored=stored, stored_norms=norms,
                        arrays={d.sha256: a for d, a, _ in done if a is not None},
                        thumbnails={d.sha256: t for d, _, t in done if t is not None})

    @staticmethod
    def embed(backbone: Backbone, prepared: Prepared) -> Embedded:
        new: dict[str, np.ndarray] = {}
        new_norms: dict[str, float] = {}
        started = time.perf_counter()
        if prepared.arrays:
            features = backbone.features(list(prepared.arrays.values()))
            lengths = np.linalg.norm(features, axis=1)
            fresh = features / np.maximum(lengths, 1e-12)[:, None]
            new = dict(zip(prepared.arrays, fresh.astype(np.float32)))
            new_norms = dict(zip(prepared.arrays, lengths.astype(float).tolist()))
        vectors = {**prepared.stored, **new}
        norms = {**prepared.stored_norms, **new_norms}
        stacked = (np.stack([vectors[d.sha256] for d in prepared.decoded]) if prepared.decoded
                   else np.zeros((0, backbone.dim), np.float32))
        return Embedded(stacked.astype(np.float32, copy=False),
                        np.asarray([norms.get(d.sha256, np.nan) for d in prepared.decoded], np.float32),
                        new, new_norms, backbone.embedder, time.perf_counter() - started if new else 0.0)
