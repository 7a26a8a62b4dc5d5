"""The Ray side of a bulk import: an actor that holds a compiled backbone and turns file paths into
content hashes, vectors and thumbnails. It never touches the store; the driver is the one writer."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from loupe.backbones.registry import load_backbone
from loupe.config import Config, ImageLimits
from loupe.errors import ImageError
from loupe.intake.image_pipeline import ImagePipeline


class EmbedSettings:
    """What every actor needs to embed exactly as the driver's app expects (plain attributes: Ray pickles it)."""

    def __init__(self, backbone_id: str, runtime: str, precision: str, threads: int, data_dir: str,
                 limits: ImageLimits) -> None:
        self.backbone_id = backbone_id
        self.runtime = runtime
        self.precision = precision
        self.threads = threads
        self.data_dir = data_dir
        self.limits = limits


class EmbedActor:
    """Callable class for `Dataset.map_batches`: a batch of {row, path, sha256} in, vectors out.

    A bad image (unreadable, not an image, changed since the driver hashed it) comes back with an
    `error` and a zero vector, so one file never fails the batch."""

    def __init__(self, settings: EmbedSettings) -> None:
        # On the driver's machine the data dir holds the compiled network already; on another node
        # the actor compiles it once into its own temporary folder.
        data_dir = Path(settings.data_dir)
        if not data_dir.is_dir():
            data_dir = Path(tempfile.gettempdir()) / "loupe-ray-worker"
        config = Config(data_dir=data_dir, runtime=settings.runtime, precision=settings.precision,
                        torch_threads=settings.threads, images=settings.limits)
        self._backbone = load_backbone(settings.backbone_id, config)
        self._pipeline = ImagePipeline(None, settings.limits, workers=2)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        expected = [str(s) for s in batch["sha256"]]
        n, dim = len(paths), self._backbone.dim
        vectors = np.zeros((n, dim), np.float32)
        norms = np.full(n, np.nan, np.float32)
        sizes = np.zeros((n, 2), np.int64)
        thumbs = np.full(n, b"", dtype=object)
        errors = np.full(n, "", dtype=object)
        images: dict[int, bytes] = {}
        for i, path in enumerate(paths):
            try:
                images[i] = Path(path).read_bytes()
            except OSError as exc:
                errors[i] = f"unreadable on the Ray worker: {exc.strerror or exc}"
        good = list(images)
        try:
            prepared = self._pipeline.prepare(self._backbone, [images[i] for i in good], thumbnails=True)
        except ImageError:
            prepared = None  # some image is bad: go one by one to name it and keep the rest
        if prepared is None:
            kept = []
            for i in good:
                try:
                    self._pipeline.prepare(self._backbone, [images[i]])
                    kept.append(i)
                except ImageError as exc:
                    errors[i] = exc.message
            good = kept
            prepared = self._pipeline.prepare(self._backbone, [images[i] for i in good], thumbnails=True)
        embedded = ImagePipeline.embed(self._backbone, prepared)
        for row, i in enumerate(good):
            decoded = prepared.decoded[row]
            if decoded.sha256 != expected[i]:
                errors[i] = "the file changed while it was being imported"
                continue
            vectors[i] = embedded.vectors[row]
            norms[i] = embedded.norms[row]
            sizes[i] = (decoded.width, decoded.height)
            thumbs[i] = prepared.thumbnails.get(decoded.sha256, b"")
        return {"row": np.asarray(batch["row"], np.int64), "vector": vectors, "norm": norms, "size": sizes,
                "thumbnail": thumbs, "error": errors,
                "embedder": np.full(n, self._backbone.embedder, dtype=object)}
