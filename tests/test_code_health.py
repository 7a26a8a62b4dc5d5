"""Structure the code-health issue asked for: bulk deletes all or nothing, errors mapped by type,
backbones run by sessions and loaded under their own locks, no import circle between the application
and the models."""

from __future__ import annotations

import ast
import threading
import time

import pytest
from conftest import CLOTHING, REPO, dataset_images
from litestar.testing import TestClient

from loupe.application import NewInput
from loupe.backbones import registry
from loupe.backbones.registry import BackboneCache
from loupe.backbones.runtimes import Session
from loupe.config import Config
from loupe.errors import (
    Busy,
    Conflict,
    ImageError,
    ModelNotTrained,
    NotFound,
    StorageFull,
    TrainingFailed,
    UrlFetchError,
)
from loupe.service.app import create_app
from loupe.service.errors import to_api_error


@pytest.fixture
def app_with_models(loupe):
    loupe.create_app("a")
    loupe.add_inputs("a", [NewInput(image=p.read_bytes(), id=f"i{n}")
                           for n, p in enumerate(dataset_images(CLOTHING / "train" / "hat", 3))])
    for model_id in ("m1", "m2", "m3"):
        loupe.models.create("a", model_id, concept_ids=["hat"])
    return loupe


def test_bulk_model_delete_is_all_or_nothing(app_with_models):
    loupe = app_with_models
    with pytest.raises(NotFound):
        loupe.models.delete_many("a", ["m1", "m2", "nope"])
    assert {m.id for m in loupe.models.list_models("a")} == {"m1", "m2", "m3"}
    assert loupe.models.delete_many("a", ["m1", "m2", "m1"]) == 2
    assert [m.id for m in loupe.models.list_models("a")] == ["m3"]


def test_bulk_delete_over_http_is_all_or_nothing(app_with_models):
    loupe = app_with_models
    headers = {"Authorization": f"Key {loupe.keys.create('a')}"}
    with TestClient(create_app(loupe)) as client:
        r = client.request("DELETE", "/v2/models", headers=headers, json={"ids": ["m1", "nope"]})
        assert r.status_code == 404
        assert len([m for m in client.get("/v2/models", headers=headers).json()["models"] if m["app_id"] == "a"]) == 3
        r = client.request("DELETE", "/v2/inputs", headers=headers, json={"ids": ["i0", "i1", "nope"]})
        assert r.status_code == 404
        assert loupe.count_inputs("a") == 3
        r = client.request("DELETE", "/v2/inputs", headers=headers, json={"ids": ["i0", "i1"]})
        assert r.status_code == 200 and loupe.count_inputs("a") == 1


def test_a_bulk_delete_racing_another_delete_deletes_all_or_none(app_with_models):
    """Two overlapping bulk deletes at once: each either deletes all its ids or none of them."""
    loupe = app_with_models
    outcomes = []

    def delete(ids):
        try:
            outcomes.append(loupe.models.delete_many("a", ids))
        except NotFound:
            outcomes.append(0)

    threads = [threading.Thread(target=delete, args=(ids,)) for ids in (["m1", "m2"], ["m2", "m3"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = {m.id for m in loupe.models.list_models("a")}
    assert sorted(outcomes) == [0, 2] and left in ({"m3"}, {"m1"})


def test_errors_map_by_type_not_by_message():
    cases = {NotFound("model", "x"): (404, 21200), NotFound("input", "x"): (404, 30102),
             NotFound("concept", "x"): (404, 21202), NotFound("version", "v"): (404, 21200),
             ModelNotTrained("whatever words"): (400, 21102), ImageError("x"): (400, 30002),
             UrlFetchError("x"): (400, 30002), Conflict("x"): (409, 11102), Busy("x"): (429, 11006),
             StorageFull("x"): (507, 11102), TrainingFailed("no_data", "x"): (400, 11102)}
    for error, expected in cases.items():
        api = to_api_error(error)
        assert (api.http_status, api.code) == expected, error
    assert to_api_error(Busy("x", retry_after=7)).headers == {"Retry-After": "7"}
    assert NotFound("input", "abc").resource == "input" and TrainingFailed("no_data", "m").reason == "no_data"


def test_backbones_are_run_by_a_session(shared_backbones):
    backbone = shared_backbones.get("effnet-lite2")
    assert isinstance(backbone.session, Session)
    assert backbone.session.runtime == "openvino" and backbone.session.precision in ("fp32", "bf16")
    assert backbone.embedder == f"openvino/{backbone.session.precision}"


def test_a_slow_backbone_load_does_not_stall_a_loaded_one(monkeypatch, tmp_path, shared_backbones):
    cache = BackboneCache(Config(data_dir=tmp_path))
    cache._loaded["effnet-lite2"] = shared_backbones.get("effnet-lite2")
    release = threading.Event()

    def slow_load(backbone_id, config):
        release.wait(10)
        return object()

    monkeypatch.setattr(registry, "load_backbone", slow_load)
    loader = threading.Thread(target=cache.get, args=("clip-vit-b-32",))
    loader.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert cache.get("effnet-lite2") is not None
    assert time.monotonic() - started < 0.5  # not behind the CLIP load
    release.set()
    loader.join()
    assert set(cache.loaded_ids()) == {"effnet-lite2", "clip-vit-b-32"}


def test_idle_backbones_are_unloaded_but_not_the_default(tmp_path, monkeypatch):
    cache = BackboneCache(Config(data_dir=tmp_path, backbone_idle_seconds=60))
    monkeypatch.setattr(registry, "load_backbone", lambda backbone_id, config: object())
    cache.get("effnet-lite2")
    cache.get("effnet-lite0")
    assert cache.unload_idle(time.monotonic() + 30) == []
    assert cache.unload_idle(time.monotonic() + 120) == ["effnet-lite0"]
    assert cache.loaded_ids() == ["effnet-lite2"]


def test_models_do_not_import_the_application():
    source = (REPO / "src" / "loupe" / "custom_models.py").read_text()
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert "loupe.application" not in imported
