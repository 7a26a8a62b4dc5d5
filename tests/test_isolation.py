"""Isolation between apps and key handling, beyond the service tests: guessed ids, every verb, timing."""

from __future__ import annotations

import base64
import statistics
import time

import pytest
from conftest import CLOTHING, dataset_images
from litestar.testing import TestClient

from loupe.application import Loupe
from loupe.config import Config
from loupe.service.app import create_app


@pytest.fixture
def two_apps(tmp_path, shared_backbones):
    loupe = Loupe(Config(data_dir=tmp_path / "d", auto_retrain=False), backbones=shared_backbones)
    for app in ("a", "b"):
        loupe.apps.create(app)
    keys = {"a": loupe.keys.create("a"), "b": loupe.keys.create("b"), "b-predict": loupe.keys.create("b", "predict")}
    with TestClient(create_app(loupe)) as client:
        yield client, keys, loupe
    loupe.close()


def test_nothing_of_app_a_reaches_a_key_of_app_b(two_apps):
    client, keys, loupe = two_apps
    a = {"Authorization": f"Key {keys['a']}"}
    images = [base64.b64encode(p.read_bytes()).decode() for p in dataset_images(CLOTHING / "train" / "hat", 4)]
    inputs = [{"id": f"secret-{i}", "data": {"image": {"base64": b}, "concepts": [{"id": "hat" if i % 2 else "cap"}],
                                             "metadata": {"owner": "a"}}} for i, b in enumerate(images)]
    assert client.post("/v2/inputs", headers=a, json={"inputs": inputs}).status_code == 200
    client.post("/v2/models", headers=a, json={"model": {"id": "private", "output_info": {
        "data": {"concepts": [{"id": "hat"}, {"id": "cap"}]}, "output_config": {"closed_environment": True}}}})
    assert client.post("/v2/models/private/versions", headers=a).status_code == 200
    version = client.get("/v2/models/private", headers=a).json()["model"]["model_version"]["id"]

    for key in ("b", "b-predict"):
        b = {"Authorization": f"Key {keys[key]}"}
        attempts = [
            client.get("/v2/inputs/secret-0", headers=b), client.get("/v2/inputs/secret-0/image", headers=b),
            client.get("/v2/inputs/secret-0/thumbnail", headers=b), client.get("/v2/models/private", headers=b),
            client.get(f"/v2/models/private/versions/{version}", headers=b),
            client.get(f"/v2/models/private/versions/{version}/metrics", headers=b),
            client.post("/v2/models/private/outputs", headers=b, json={"inputs": [{"id": "secret-0"}]}),
            client.post("/v2/models/private/outputs", headers=b, json={"inputs": [{"data": {"image": {"base64": images[0]}}}]}),
            client.get("/v2/concepts/hat", headers=b), client.get("/v2/models/private/advice", headers=b),
            client.post("/v2/searches", headers=b, json={"query": {"ands": [{"output": {"input": {"id": "secret-0", "data": {"image": {}}}}}]}}),
        ]
        assert all(r.status_code == 404 for r in attempts), [(r.request.url.path, r.status_code) for r in attempts]
        # Listings and searches in B show nothing of A's.
        assert client.get("/v2/inputs", headers=b).json()["inputs"] == []
        assert [m for m in client.get("/v2/models", headers=b).json()["models"] if m["app_id"] != "main"] == []
        assert client.get("/v2/concepts", headers=b).json()["concepts"] == []
        by_meta = client.post("/v2/searches", headers=b, json={"query": {"ands": [{"input": {"data": {"metadata": {"owner": "a"}}}}]}})
        assert by_meta.json()["hits"] == []
        by_image = client.post("/v2/searches", headers=b, json={"query": {"ands": [{"output": {"input": {"data": {"image": {"base64": images[0]}}}}}]}})
        assert by_image.json()["hits"] == []
    b = {"Authorization": f"Key {keys['b']}"}
    for r in (client.request("DELETE", "/v2/inputs/secret-0", headers=b, json={}),
              client.request("DELETE", "/v2/inputs", headers=b, json={"ids": ["secret-1"]}),
              client.request("DELETE", "/v2/models/private", headers=b, json={}),
              client.patch("/v2/inputs", headers=b, json={"action": "overwrite", "inputs": [{"id": "secret-2", "data": {"concepts": [{"id": "x"}]}}]})):
        assert r.status_code == 404, r.text
    client.request("DELETE", "/v2/inputs", headers=b, json={"delete_all": True})  # B's own (empty) app
    client.request("DELETE", "/v2/models", headers=b, json={"delete_all": True})
    assert loupe.inputs.count("a") == 4 and loupe.models.get("a", "private").id == "private"
    assert loupe.inputs.get("a", "secret-2").concepts == ["cap"]  # untouched by B's overwrite


def test_wrong_key_costs_what_a_right_key_costs(two_apps):
    _, keys, loupe = two_apps
    right = keys["a"]
    wrong_same_prefix = right[:-4] + ("AAAA" if not right.endswith("AAAA") else "BBBB")
    wrong_random = "lk_" + "x" * (len(right) - 3)

    candidates = {"right": right, "near": wrong_same_prefix, "random": wrong_random}
    samples: dict[str, list[int]] = {name: [] for name in candidates}
    for round_ in range(4000):  # interleaved, so drift and noise hit every candidate alike
        for name, key in candidates.items():
            start = time.perf_counter_ns()
            loupe.keys.verify(key)
            if round_ >= 200:
                samples[name].append(time.perf_counter_ns() - start)
    medians = {name: statistics.median(s) for name, s in samples.items()}
    assert loupe.keys.verify(right) is not None and loupe.keys.verify(wrong_same_prefix) is None
    # One hash, one lookup, one decode, one constant-time compare either way.
    assert max(medians.values()) < 1.5 * min(medians.values()), medians
