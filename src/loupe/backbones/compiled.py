"""Backbones run by a compiled runtime (OpenVINO). Built once per (backbone, weights, runtime version)
from the torch module, kept in DATA_DIR/compiled; afterwards loading imports neither torch nor timm."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from loupe.backbones.base import Backbone, SessionBackbone, l2_normalise
from loupe.backbones.runtimes import Session
from loupe.backbones.runtimes.compiled_cache import CacheKey, CompiledCache
from loupe.backbones.runtimes.cpu import resolve_precision
from loupe.backbones.runtimes.openvino_session import OpenVinoSession
from loupe.backbones.specs import SPECS, BackboneSpec, weights_identity
from loupe.config import Config
from loupe.errors import CapabilityMissing

log = logging.getLogger(__name__)

CLIP_CONTEXT = 77  # tokens per text, as open_clip's tokenizer pads them


class RuntimeUnavailable(Exception):
    """The compiled runtime cannot be used here (not installed, conversion failed): use torch."""


class CompiledBackbone(SessionBackbone):
    def __init__(self, spec: BackboneSpec, session: Session, text_session: Session | None = None,
                 tokenizer: Callable[[], Callable[[list[str]], np.ndarray]] | None = None,
                 classifier: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """`tokenizer()` makes the text tokenizer, on first use."""
        self.spec = spec
        self.id, self.dim, self.supports_text = spec.id, spec.dim, spec.supports_text
        self.preprocessing = spec.preprocessing
        self.chunk = spec.chunk
        self.session = session
        self._text_session = text_session
        self._make_tokenizer = tokenizer
        self._tokenize: Callable[[list[str]], np.ndarray] | None = None
        self._classifier = classifier  # ImageNet head (weights [1000, dim], bias) over pooled features

    def classifier(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self._classifier

    def classify_imagenet(self, images: list[Image.Image]) -> np.ndarray:
        """ImageNet-1k probabilities from the same weights (the classifier over the pooled features)."""
        if self._classifier is None:
            raise CapabilityMissing(f"backbone {self.id} has no ImageNet classifier")
        features = self.features([self.preprocess(im) for im in images])
        weights, bias = self._classifier
        logits = features @ weights.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        if self._text_session is None or self._make_tokenizer is None:
            raise CapabilityMissing(f"backbone {self.id} has no text tower; text needs a CLIP backbone")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self._tokenize is None:
            self._tokenize = self._make_tokenizer()
        return l2_normalise(self._text_session.run(self._tokenize(texts)))


def load_compiled(backbone_id: str, config: Config, torch_loader: Callable[[], Any]) -> Backbone:
    """`torch_loader()` gives the torch backbone; it is called only when a compiled model must be built."""
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeUnavailable("the openvino package is not installed") from None
    spec = SPECS[backbone_id]
    precision = resolve_precision(config.precision)
    runtime = f"openvino-{ov.__version__}"
    weights = weights_identity(backbone_id, config)
    cache = CompiledCache(config.compiled_dir)
    core = ov.Core()
    loaded: list[Any] = []

    def torch_backbone() -> Any:
        if not loaded:
            loaded.append(torch_loader())
        return loaded[0]

    def session(tower: str) -> tuple[Session, Path]:
        key = CacheKey(backbone_id, weights, runtime, "fp32", tower)

        def build(folder: Path) -> None:
            convert(torch_backbone(), tower, spec, folder)

        for attempt in range(2):
            xml = cache.get_or_build(key, build)
            try:
                return OpenVinoSession(core, str(xml), precision, config.torch_threads,
                                       config.embed_concurrency, config.runtime_mode), xml.parent
            except RuntimeError as exc:  # a file the manifest vouched for, yet OpenVINO cannot read it
                if attempt:
                    raise RuntimeUnavailable(f"OpenVINO cannot load {backbone_id}: {exc}") from exc
                log.warning("compiled %s (%s) does not load (%s): rebuilding", backbone_id, tower, exc)
                cache.discard(key)
        raise AssertionError("unreachable")

    image, folder = session("image")
    if not spec.supports_text:
        classifier = None
        if (folder / "classifier.npz").exists():
            with np.load(folder / "classifier.npz") as saved:
                classifier = (saved["weights"], saved["bias"])
        return CompiledBackbone(spec, image, classifier=classifier)
    return CompiledBackbone(spec, image, session("text")[0], clip_tokenizer)


def convert(torch_backbone: Any, tower: str, spec: BackboneSpec, folder: Path) -> None:
    """The torch tower -> OpenVINO IR (fp32 weights; bf16 is chosen when compiling)."""
    import openvino as ov
    import torch

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracing notes about Python-side shape checks: constant here
            if tower == "image":
                size = spec.preprocessing.size
                model = ov.convert_model(torch_backbone.image_tower(), example_input=torch.zeros(1, 3, size, size),
                                         input=[(-1, 3, size, size)])
            else:
                tokens = torch.zeros(1, CLIP_CONTEXT, dtype=torch.int64)
                model = ov.convert_model(torch_backbone.text_tower(), example_input=tokens,
                                         input=[((-1, CLIP_CONTEXT), ov.Type.i64)])
        ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
        head = getattr(torch_backbone, "imagenet_head", None)
        if tower == "image" and head is not None:
            weights, bias = head()
            np.savez(folder / "classifier.npz", weights=weights, bias=bias)
    except Exception as exc:  # noqa: BLE001 - any conversion failure means: run this backbone with torch
        raise RuntimeUnavailable(f"converting {spec.id} ({tower}) to OpenVINO failed: {exc}") from exc


def clip_tokenizer() -> Callable[[list[str]], np.ndarray]:
    """open_clip's tokenizer (it imports torch: the first text search of a CLIP app pays that once)."""
    from loupe.backbones.torchvision_compat import import_with_torchvision_fix

    tokenizer = import_with_torchvision_fix("open_clip").get_tokenizer("ViT-B-32")
    return lambda texts: tokenizer(texts).numpy().astype(np.int64)
