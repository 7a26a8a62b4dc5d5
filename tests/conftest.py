"""Shared fixtures: real datasets from ../shared, real backbones loaded once, a fresh store per test."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from loupe.application import Loupe
from loupe.backbones.registry import BackboneCache
from loupe.config import Config

REPO = Path(__file__).resolve().parents[1]
# Photos in the repository, so a plain clone runs the suite: the package's Clothing-10 demo set (CC0;
# 20 training photos per class, 40 hats, 10 held out per class) and 20 Caltech-101 photos (CC BY 4.0).
# The full datasets in ../shared are for the benchmarks.
CLOTHING = REPO / "src" / "loupe" / "demo_photos" / "clothing10"
CALTECH = REPO / "tests" / "photos" / "caltech101"


def dataset_images(folder: Path, n: int, start: int = 0) -> list[Path]:
    files = sorted(folder.glob("*.jpg"))[start:start + n]
    assert len(files) == n, f"expected {n} images in {folder}, found {len(files)}"
    return files


def base64_photos(classes, per_class: int, split: str = "train") -> list[str]:
    """Clothing-10 photos as the base64 strings the API takes, per_class of each class in order."""
    import base64

    return [base64.b64encode(p.read_bytes()).decode()
            for cls in classes for p in dataset_images(CLOTHING / split / cls, per_class)]


def image_bytes(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def shared_backbones(tmp_path_factory) -> BackboneCache:
    return BackboneCache(Config(data_dir=tmp_path_factory.mktemp("unused")))


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(data_dir=tmp_path / "data")


@pytest.fixture
def loupe(config, shared_backbones):
    app = Loupe(config, backbones=shared_backbones)
    yield app
    app.close()


@pytest.fixture(scope="session")
def clip_weights(tmp_path_factory) -> Path:
    """A randomly initialised open_clip ViT-B-32 saved to a file: no CLIP weights can be had here."""
    import torch

    from loupe.backbones.clip import ARCHITECTURE
    from loupe.backbones.torchvision_compat import import_with_torchvision_fix

    open_clip = import_with_torchvision_fix("open_clip")
    torch.manual_seed(0)
    model = open_clip.create_model(ARCHITECTURE, pretrained=None)
    path = tmp_path_factory.mktemp("clip") / "vit-b-32-random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def live_server(tmp_path):
    """A real `loupe serve` process with one empty app, 'live'; yields (base URL, its API key)."""
    from real_server import Server, new_app

    key = new_app(tmp_path / "live-data", "live")
    running = Server(tmp_path / "live-data").start()
    yield running.base, key
    running.stop()


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray cluster (2 CPUs) for the whole session: it takes seconds to start."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
