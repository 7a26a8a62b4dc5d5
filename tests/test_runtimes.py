"""The compiled runtime under the backbones: fidelity to the eager fp32 torch reference on real photos,
fallback to torch, cache invalidation, damaged cache files, a torch-free start."""

from __future__ import annotations

import builtins
import subprocess
import sys
import textwrap

import numpy as np
import openvino
import pytest
from conftest import CALTECH, CLOTHING, dataset_images
from PIL import Image

from loupe.backbones import compiled as compiled_module
from loupe.backbones import specs
from loupe.backbones.compiled import CompiledBackbone
from loupe.backbones.registry import load_backbone
from loupe.backbones.runtimes import cpu_has_fast_bf16
from loupe.config import Config
from loupe.intake.image_pipeline import ImagePipeline
from loupe.store import Store


def photos() -> list[bytes]:
    """40 real photos of two datasets this project's models were never fitted on."""
    paths = [p for cls in ("hat", "shoes", "dress", "pants") for p in dataset_images(CLOTHING / "test" / cls, 5)]
    paths += [p for cls in ("airplanes", "Faces", "watch", "chair") for p in dataset_images(CALTECH / cls, 5)]
    return [p.read_bytes() for p in paths]


@pytest.fixture(scope="module")
def reference():
    """Eager fp32 torch with timm's own preprocessing for the model: what stored vectors must match."""
    import torch

    from loupe.backbones.effnet_lite import EfficientNetLite
    from loupe.backbones.torchvision_compat import import_with_torchvision_fix

    timm = import_with_torchvision_fix("timm")
    backbone = EfficientNetLite("lite2", fast=False)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=backbone.model))
    import io

    batch = torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in photos()])
    with torch.inference_mode():
        features = backbone.image_tower()(batch).numpy()
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def stored_vectors(tmp_path, **config) -> tuple[np.ndarray, str]:
    """Vectors exactly as Loupe stores them: its decoder (with JPEG drafts), preprocessing, runtime."""
    cfg = Config(data_dir=tmp_path, **config)
    backbone = load_backbone("effnet-lite2", cfg)
    store = Store(cfg.lmdb_path, cfg.lmdb_map_size)
    pipeline = ImagePipeline(store, cfg.images, workers=2)
    try:
        vectors = pipeline.embed(backbone, pipeline.prepare(backbone, photos())).vectors
    finally:
        pipeline.close()
        store.close()
    return vectors, backbone.embedder


CASES = [("openvino", "fp32"), ("torch", "fp32"), ("torch", "auto")]
if cpu_has_fast_bf16():
    CASES.append(("openvino", "bf16"))


@pytest.mark.parametrize("runtime,precision", CASES)
def test_stored_vectors_match_the_fp32_reference(reference, tmp_path, runtime, precision):
    vectors, embedder = stored_vectors(tmp_path, runtime=runtime, precision=precision)
    assert embedder.startswith(runtime)
    cos = (vectors * reference).sum(axis=1)
    assert cos.mean() >= 0.995 and cos.min() >= 0.98, (embedder, cos.mean(), cos.min())


def test_auto_precision_is_recorded(tmp_path):
    backbone = load_backbone("effnet-lite2", Config(data_dir=tmp_path))
    assert backbone.embedder == ("openvino/bf16" if cpu_has_fast_bf16() else "openvino/fp32")


def test_no_openvino_means_torch(tmp_path, monkeypatch, caplog):
    real_import = builtins.__import__

    def without_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_openvino)
    backbone = load_backbone("effnet-lite0", Config(data_dir=tmp_path))
    assert backbone.embedder.startswith("torch/")
    assert "openvino package is not installed" in caplog.text


def test_a_failed_conversion_means_torch(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise compiled_module.RuntimeUnavailable("converting effnet-lite0 (image) to OpenVINO failed: boom")

    monkeypatch.setattr(compiled_module, "convert", broken)
    assert load_backbone("effnet-lite0", Config(data_dir=tmp_path)).embedder.startswith("torch/")


def _entries(tmp_path):
    return sorted(p.name for p in (tmp_path / "compiled").iterdir())


def test_cache_is_reused_then_rebuilt_when_weights_or_runtime_change(tmp_path, monkeypatch):
    cfg = Config(data_dir=tmp_path)
    built = []
    real_convert = compiled_module.convert
    monkeypatch.setattr(compiled_module, "convert", lambda *a: built.append(1) or real_convert(*a))
    first = load_backbone("effnet-lite0", cfg)
    load_backbone("effnet-lite0", cfg)
    assert len(built) == 1  # the second load used the cache
    before = _entries(tmp_path)

    monkeypatch.setattr(compiled_module, "weights_identity", lambda *a: "new-weights-sha256")
    load_backbone("effnet-lite0", cfg)
    assert len(built) == 2 and _entries(tmp_path) != before and len(_entries(tmp_path)) == 1  # old one gone

    monkeypatch.setattr(openvino, "__version__", "2099.1.0-future")
    second = load_backbone("effnet-lite0", cfg)
    assert len(built) == 3 and len(_entries(tmp_path)) == 1
    image = [Image.open(dataset_images(CLOTHING / "test" / "hat", 1)[0]).convert("RGB")]
    np.testing.assert_allclose(first.embed(image), second.embed(image), atol=1e-5)


@pytest.mark.parametrize("damage", ["truncate-bin", "garble-xml", "drop-manifest", "edit-manifest"])
def test_a_damaged_cache_entry_is_rebuilt(tmp_path, damage):
    cfg = Config(data_dir=tmp_path, precision="fp32")
    image = [Image.open(dataset_images(CLOTHING / "test" / "shoes", 1)[0]).convert("RGB")]
    good = load_backbone("effnet-lite0", cfg).embed(image)
    [folder] = list((tmp_path / "compiled").iterdir())
    if damage == "truncate-bin":
        data = (folder / "model.bin").read_bytes()
        (folder / "model.bin").write_bytes(data[: len(data) // 2])
    elif damage == "garble-xml":
        (folder / "model.xml").write_text("<net>not a model</net>")
    elif damage == "drop-manifest":
        (folder / "manifest.json").unlink()
    else:
        (folder / "manifest.json").write_text('{"key": {}, "sha256": {}}')
    again = load_backbone("effnet-lite0", cfg)
    assert isinstance(again, CompiledBackbone)
    np.testing.assert_allclose(again.embed(image), good, atol=1e-5)


def test_a_cached_model_starts_without_torch(tmp_path):
    """The CLI's hot path: with the compiled model cached, loading and embedding never import torch."""
    load_backbone("effnet-lite0", Config(data_dir=tmp_path))  # builds the cache (imports torch)
    photo = dataset_images(CLOTHING / "test" / "hat", 1)[0]
    script = textwrap.dedent(f"""
        import sys, time
        started = time.perf_counter()
        from loupe.application import Loupe
        from loupe.config import Config
        from loupe.backbones.registry import load_backbone
        backbone = load_backbone("effnet-lite0", Config(data_dir={str(tmp_path)!r}))
        from PIL import Image
        vector = backbone.embed([Image.open({str(photo)!r}).convert("RGB")])
        assert vector.shape == (1, 1280)
        assert "torch" not in sys.modules, "torch was imported"
        print(round(time.perf_counter() - started, 2))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_weights_identity_is_the_wheel_files_hash():
    path = specs.wheel_weights_file("effnet-lite2")
    assert path.name.endswith(".pth") and specs.weights_identity("effnet-lite2", Config()) == specs.file_sha256(path)


def test_the_app_records_what_embedded_its_vectors(tmp_path, shared_backbones):
    from litestar.testing import TestClient

    from loupe.application import Loupe
    from loupe.intake.inputs import NewInput
    from loupe.service.app import create_app

    with Loupe(Config(data_dir=tmp_path), backbones=shared_backbones) as loupe:
        loupe.apps.create("a")
        loupe.inputs.add("a", [NewInput(image=p.read_bytes()) for p in dataset_images(CLOTHING / "test" / "dress", 2)])
        embedder = loupe.context.backbone(loupe.apps.get("a")).embedder
        assert loupe.apps.get("a").embedders == [embedder]
        headers = {"Authorization": f"Key {loupe.keys.create('a')}"}
        with TestClient(create_app(loupe)) as client:
            assert client.get("/v2/loupe/app", headers=headers).json()["app"]["embedders"] == [embedder]
