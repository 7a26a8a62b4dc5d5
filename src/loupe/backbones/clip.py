"""CLIP (open_clip ViT-B-32) image and text embedder."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from loupe.backbones.base import SessionBackbone, l2_normalise
from loupe.backbones.preprocess import Preprocessing
from loupe.backbones.runtimes import Session
from loupe.backbones.runtimes.torch_session import TorchSession
from loupe.backbones.torchvision_compat import import_with_torchvision_fix
from loupe.errors import BackboneUnavailable

ARCHITECTURE = "ViT-B-32"


class _TextTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # timm / open_clip model: their methods, not Module's

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


class ClipBackbone(SessionBackbone):
    supports_text = True

    def __init__(self, pretrained: str, *, backbone_id: str = "clip-vit-b-32", chunk: int = 32,
                 fast: bool = True, bf16: bool = True) -> None:
        """`pretrained` is an open_clip pretrained tag (downloaded once, then cached) or a local file."""
        open_clip = import_with_torchvision_fix("open_clip")
        looks_like_path = os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
        if looks_like_path and not os.path.isfile(pretrained):
            raise BackboneUnavailable(f"CLIP weights file not found: {pretrained}")
        try:
            model = open_clip.create_model(ARCHITECTURE, pretrained=pretrained, device="cpu")
        except Exception as exc:  # network failure, bad tag, incompatible file: all mean "unavailable"
            raise BackboneUnavailable(f"cannot load CLIP {ARCHITECTURE} weights {pretrained!r}: {exc}") from exc
        self.id = backbone_id
        self.model = model.eval()
        self.dim = int(model.visual.output_dim)
        cfg = model.visual.preprocess_cfg
        self.preprocessing = Preprocessing(size=int(cfg["size"][0]), crop_pct=1.0,
                                           mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
        self.tokenizer = open_clip.get_tokenizer(ARCHITECTURE)
        self.chunk = chunk
        self.session: Session = TorchSession(self.model, self.model.encode_image, fast=fast, bf16_batches=False,
                                             bf16=bf16)

    def classifier(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None  # zero-shot from the text tower instead (loupe.workflow)

    def image_tower(self) -> torch.nn.Module:
        return self.model.visual.eval()  # encode_image(x) is visual(x) when not normalising

    def text_tower(self) -> torch.nn.Module:
        return _TextTower(self.model).eval()

    def embed_text(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            return l2_normalise(self.model.encode_text(self.tokenizer(texts)).float().numpy())
