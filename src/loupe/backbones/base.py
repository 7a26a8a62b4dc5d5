"""The backbone interface every embedder implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from loupe.backbones.preprocess import Preprocessing, center_crop_resize
from loupe.backbones.runtimes.base import Session, run_in_chunks

if TYPE_CHECKING:
    import torch


@runtime_checkable
class Backbone(Protocol):
    id: str
    dim: int
    supports_text: bool
    preprocessing: Preprocessing

    @property
    def embedder(self) -> str:
        """runtime/precision that makes the vectors, e.g. "openvino/bf16" or "torch/fp32"."""
        ...

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image -> float32 CHW array ready for the network."""
        ...

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        """RGB images -> float32[n, dim], each row L2-normalised."""
        ...

    def embed_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        """Preprocessed CHW arrays -> float32[n, dim], each row L2-normalised."""
        ...

    def features(self, arrays: list[np.ndarray]) -> np.ndarray:
        """Preprocessed CHW arrays -> float32[n, dim] pooled features, not normalised."""
        ...

    def classifier(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The ImageNet-1k head over the features (weights [1000, dim], bias [1000]), if the backbone has one."""
        ...

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Strings -> float32[n, dim] L2-normalised (only when supports_text)."""
        ...


class TorchBackbone(Backbone, Protocol):
    """A backbone loaded in torch: its image tower can be converted (OpenVINO) or exported (ONNX)."""

    def image_tower(self) -> torch.nn.Module:
        """The network from a preprocessed image batch to pooled features, as one module."""
        ...


class SessionBackbone:
    """What every backbone does the same way once it has a session: preprocess, run in chunks, normalise.
    Subclasses set `dim`, `preprocessing`, `session` and `chunk` (images per network call)."""

    dim: int
    preprocessing: Preprocessing
    session: Session
    chunk: int

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return center_crop_resize(image, self.preprocessing)

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_arrays([self.preprocess(im) for im in images])

    def embed_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        """Already preprocessed CHW arrays (the import pipeline prepares them on worker threads)."""
        return l2_normalise(self.features(arrays))

    def features(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The network's pooled features, not normalised (their norm matters to the ImageNet head)."""
        return run_in_chunks(self.session, arrays, self.chunk)

    @property
    def embedder(self) -> str:
        """What makes the vectors (runtime/precision): recorded with the app whose vectors it made."""
        return f"{self.session.runtime}/{self.session.precision}"


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
