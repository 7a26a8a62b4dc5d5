"""Images, videos and stored inputs as rows of unit vectors, for predictions and searches.

Decoding and embedding hold large buffers (a 40 MP photo is 120 MB of pixels) and all the cores: at
most `embed_concurrency` run at once (the gate), the rest wait, so memory and latency stay bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from loupe.apps.context import AppContext
from loupe.backbones.base import l2_normalise
from loupe.intake.image_pipeline import Embedded, ImagePipeline
from loupe.intake.imaging import decode_image
from loupe.intake.video import FrameTime, sample_frames
from loupe.store.records import App


class VideoClip(msgspec.Struct):
    """A video to predict: one answer per sampled frame (one every sample_ms; 0 = Clarifai's 1 s)."""

    data: bytes
    sample_ms: int = 0


Item = str | bytes | VideoClip  # a stored input (its id), a new image, a video


class EmbeddedRows(msgspec.Struct):
    vectors: Any  # np.ndarray [rows, dim], unit vectors
    norms: Any  # np.ndarray [rows], feature norms (NaN where unknown)
    spans: list[tuple[int, int]]  # each input's rows
    frames: list[list[FrameTime]]  # each input's sampled frames (empty for images)
    still: list[str | bytes]  # the images and stored inputs, rows 0..len(still)-1


class Embedder:
    def __init__(self, context: AppContext, images: ImagePipeline) -> None:
        self._context = context
        self._config = context.config
        self.images = images
        self.gate = threading.BoundedSemaphore(context.config.embed_concurrency)

    def image_vectors(self, app: App, images: list[bytes]) -> np.ndarray:
        """Decode and embed (or look up) images for a prediction or search, within the embedding gate."""
        return self.image_embedded(app, images).vectors

    def image_embedded(self, app: App, images: list[bytes]) -> Embedded:
        """Vectors and feature norms of images (embedded, or looked up), within the embedding gate."""
        backbone = self._context.backbone(app)
        with self.gate:
            embedded = self.images.embed(backbone, self.images.prepare(backbone, images))
        self._context.tell_embedded(backbone.id, embedded.embedder, len(embedded.new), embedded.seconds)
        return embedded

    def rows(self, app: App, inputs: Sequence[Item]) -> EmbeddedRows:
        """Every input as rows of one matrix: a row per image or stored input, a row per video frame."""
        backbone = self._context.backbone(app)
        still = [i for i in inputs if not isinstance(i, VideoClip)]
        vectors, norms = self.item_vectors(app, still) if still else (np.zeros((0, backbone.dim), np.float32),
                                                                       np.zeros(0, np.float32))
        spans: list[tuple[int, int]] = []
        frames: list[list[FrameTime]] = []
        parts, part_norms, row, at = [vectors], [norms], len(still), 0
        for item in inputs:
            if isinstance(item, VideoClip):
                samples, clip_vectors, clip_norms = self.video_vectors(app, item)
                parts.append(clip_vectors)
                part_norms.append(clip_norms)
                spans.append((row, row + len(samples)))
                frames.append(samples)
                row += len(samples)
            else:
                spans.append((at, at + 1))
                frames.append([])
                at += 1
        return EmbeddedRows(np.concatenate(parts), np.concatenate(part_norms), spans, frames, still)

    def video_vectors(self, app: App, clip: VideoClip) -> tuple[list[FrameTime], np.ndarray, np.ndarray]:
        """Sampled frames of a video with their unit vectors and feature norms, embedded a batch at a
        time as they are decoded, within the embedding gate (decoding a video is as heavy as embedding it)."""
        backbone = self._context.backbone(app)
        times: list[FrameTime] = []
        features: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        with self.gate:
            for sample in sample_frames(clip.data, self._config.videos, clip.sample_ms):
                times.append(sample.at)
                batch.append(backbone.preprocess(sample.image))
                if len(batch) == self._config.embed_batch_size:
                    features.append(backbone.features(batch))
                    batch = []
            if batch:
                features.append(backbone.features(batch))
        stacked = np.concatenate(features)
        return times, l2_normalise(stacked), np.linalg.norm(stacked, axis=1).astype(np.float32)

    def item_vectors(self, app: App, items: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors and feature norms (NaN where not kept) of stored inputs (ids) and new images
        (bytes), in the order given; new images are embedded within the gate."""
        vectors = np.zeros((len(items), self._context.backbone(app).dim), np.float32)
        norms = np.full(len(items), np.nan, np.float32)
        stored = {i: item for i, item in enumerate(items) if isinstance(item, str)}
        new = {i: item for i, item in enumerate(items) if isinstance(item, bytes)}
        if new:
            embedded = self.image_embedded(app, list(new.values()))
            vectors[list(new)], norms[list(new)] = embedded.vectors, embedded.norms
        if stored:
            records = [self._context.get_input(app.id, input_id) for input_id in stored.values()]
            vectors[list(stored)] = self._context.embeddings_of(app, np.asarray([r.seq for r in records], np.int64))
            with self._context.store.read() as tx:
                norms[list(stored)] = [tx.get_feature_norm(app.backbone, r.sha256) or np.nan for r in records]
        return vectors, norms

    def fill_norms(self, app: App, rows: EmbeddedRows) -> None:
        """Feature norms for stored vectors kept before norms were (ImageNet answers need them): those
        images go through the network again."""
        missing = [i for i in range(len(rows.still)) if not np.isfinite(rows.norms[i])]
        if not missing:
            return
        backbone = self._context.backbone(app)
        images = [item if isinstance(item, bytes) else self._context.image_of(app.id, item)
                  for item in (rows.still[i] for i in missing)]
        with self.gate:
            arrays = [backbone.preprocess(img) for img in
                      (decode_image(b, self._config.images).image for b in images) if img is not None]
            rows.norms[missing] = np.linalg.norm(backbone.features(arrays), axis=1).astype(np.float32)

