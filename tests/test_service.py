"""The HTTP API through Litestar's test client: Clarifai shapes, keys and isolation, errors, URL inputs."""

from __future__ import annotations

import base64
import http.server
import threading

import pytest
from conftest import CLOTHING, dataset_images
from litestar.testing import TestClient

from loupe.application import Loupe
from loupe.config import Config, ImageLimits
from loupe.service.app import create_app


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture
def api(tmp_path, shared_backbones):
    loupe = Loupe(Config(data_dir=tmp_path / "d", auto_retrain=False, url_allow_hosts=("127.0.0.1",),
                         images=ImageLimits(max_bytes=2 * 1024 * 1024)),
                  backbones=shared_backbones)
    loupe.apps.create("a")
    loupe.apps.create("b")
    keys = {"a": loupe.keys.create("a"), "b": loupe.keys.create("b"), "a-predict": loupe.keys.create("a", "predict")}
    with TestClient(create_app(loupe, max_body_bytes=2 * 1024 * 1024)) as client:
        yield client, keys, loupe


def h(key: str) -> dict:
    return {"Authorization": f"Key {key}"}


def _add(client, key, cls, n, prefix=None):
    inputs = [{"id": f"{prefix or cls}-{i}", "data": {"image": {"base64": b64(p)}, "concepts": [{"id": cls, "value": 1.0}]}}
              for i, p in enumerate(dataset_images(CLOTHING / "train" / cls, n))]
    return client.post("/v2/inputs", json={"inputs": inputs}, headers=h(key))


def test_the_same_image_posted_twice_is_reported_and_not_doubled(api):
    """Issue 25 over HTTP: without an id, the stored input answers (labels merged), with its status saying
    so; with an id of its own, it is added and named as a repeat; another app's copy is not its business."""
    client, keys, _ = api
    photo = b64(dataset_images(CLOTHING / "train" / "hat", 1)[0])
    first = client.post("/v2/inputs", headers=h(keys["a"]), json={"inputs": [{"data": {"image": {"base64": photo}}}]})
    first_id = first.json()["inputs"][0]["id"]
    assert "details" not in first.json()["inputs"][0]["status"]
    again = client.post("/v2/inputs", headers=h(keys["a"]), json={"inputs": [
        {"data": {"image": {"base64": photo}, "concepts": [{"id": "hat", "value": 1}]}}]})
    assert again.status_code == 200, again.text
    answer = again.json()["inputs"][0]
    assert answer["id"] == first_id and answer["status"]["code"] == 30000
    assert f"the same image as input '{first_id}': linked" in answer["status"]["details"]
    assert [c["id"] for c in answer["data"]["concepts"]] == ["hat"]
    named = client.post("/v2/inputs", headers=h(keys["a"]), json={"inputs": [{"id": "mine", "data": {"image": {"base64": photo}}}]})
    assert named.json()["inputs"][0]["id"] == "mine" and first_id in named.json()["inputs"][0]["status"]["details"]
    assert len(client.get("/v2/inputs", headers=h(keys["a"])).json()["inputs"]) == 2
    unlabeled = client.get("/v2/inputs?unlabeled=true", headers=h(keys["a"])).json()["inputs"]
    assert [i["id"] for i in unlabeled] == ["mine"]  # the linked one got its "hat"
    assert client.get("/v2/inputs?unlabeled=true&concept=hat", headers=h(keys["a"])).status_code == 400
    other = client.post("/v2/inputs", headers=h(keys["b"]), json={"inputs": [{"data": {"image": {"base64": photo}}}]})
    assert "details" not in other.json()["inputs"][0]["status"]  # app b knows nothing of app a's copy


def test_inputs_round_trip_in_clarifai_shape(api):
    client, keys, _ = api
    r = _add(client, keys["a"], "shoes", 2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"]["code"] == 10000 and body["status"]["description"] == "Ok"
    assert body["status"]["req_id"] == r.headers["x-request-id"]  # as Clarifai's answers carry it
    first = body["inputs"][0]
    assert first["id"] == "shoes-0" and first["status"]["code"] == 30000
    assert first["data"]["concepts"] == [{"id": "shoes", "name": "shoes", "value": 1.0, "app_id": "a"}]
    assert first["created_at"].endswith("Z") and "T" in first["created_at"]
    image = client.get(first["data"]["image"]["url"].replace("http://testserver.local", ""), headers=h(keys["a"]))
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    listed = client.get("/v2/inputs?page=1&per_page=1", headers=h(keys["a"])).json()["inputs"]
    assert [i["id"] for i in listed] == ["shoes-1"]
    assert client.get("/v2/inputs?page=2&per_page=5", headers=h(keys["a"])).json()["inputs"] == []


def test_keys_decide_the_app_and_scope(api):
    client, keys, loupe = api
    _add(client, keys["a"], "shoes", 1)
    assert client.get("/v2/inputs/shoes-0", headers=h(keys["b"])).status_code == 404  # B cannot see A's input
    assert client.get("/v2/inputs", headers=h(keys["b"])).json()["inputs"] == []
    assert client.request("DELETE", "/v2/inputs/shoes-0", headers=h(keys["b"]), json={}).status_code == 404
    r = client.post("/v2/searches", headers=h(keys["b"]),
                    json={"query": {"ands": [{"output": {"input": {"id": "shoes-0", "data": {"image": {}}}}}]}})
    assert r.status_code == 404
    assert client.get("/v2/inputs/shoes-0", headers=h(keys["a"])).status_code == 200
    # predict scope: may read and search, not write
    assert client.get("/v2/inputs", headers=h(keys["a-predict"])).status_code == 200
    r = _add(client, keys["a-predict"], "hat", 1)
    assert r.status_code == 403 and r.json()["status"]["code"] == 11007
    # no key, wrong key, the literal "Key None" the client sends without a key
    for headers in ({}, h("lk_not-a-real-key"), {"Authorization": "Key None"}, {"Authorization": "Bearer x"}):
        r = client.get("/v2/inputs", headers=headers)
        assert r.status_code == 401 and r.json()["status"]["code"] == 11009
    stored = [r.digest for r in loupe.keys.of_app("a")]
    assert keys["a"] not in stored and all(len(d) == 64 for d in stored)  # hashed


def test_client_mistakes_are_4xx_with_a_reason(api):
    client, keys, _ = api
    k = h(keys["a"])
    cases = [
        client.post("/v2/inputs", content=b"{not json", headers=k),
        client.post("/v2/inputs", json={"inputs": "nope"}, headers=k),
        client.post("/v2/inputs", json={"inputs": [{"data": {"image": {}}}]}, headers=k),
        client.post("/v2/inputs", json={"inputs": [{"data": {"image": {"base64": "!!!"}}}]}, headers=k),
        client.post("/v2/inputs", json={"inputs": [{"data": {"image": {"base64": base64.b64encode(b"hello").decode()}}}]}, headers=k),
        client.post("/v2/inputs", json={"inputs": [{"id": "a/b", "data": {"image": {"base64": b64(dataset_images(CLOTHING / "train" / "hat", 1)[0])}}}]}, headers=k),
        client.get("/v2/inputs/nope", headers=k),
        client.get("/v2/models/nope", headers=k),
        client.get("/v2/inputs?page=abc", headers=k),
        client.post("/v2/models/nope/outputs", json={"inputs": [{"id": "x"}]}, headers=k),
        client.post("/v2/inputs", content=b"[" * 1000 + b"]" * 1000, headers=k),
        client.post("/v2/inputs", content=b"x" * (3 * 1024 * 1024), headers=k),
        client.patch("/v2/inputs", json={"action": "explode", "inputs": [{"id": "x"}]}, headers=k),
        client.post("/v2/searches/feedback", content=b"{broken", headers=k),
        client.post("/v2/models/m/feedback", json=[1, 2], headers=k),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        status = r.json()["status"]
        assert status["code"] != 10000 and status["description"]
    assert cases[4].json()["status"]["description"].startswith("input 0")
    assert cases[6].json()["status"]["code"] == 30102 and cases[7].json()["status"]["code"] == 21200
    assert client.get("/healthz").status_code == 200  # still serving


def test_train_predict_search_over_http(api):
    client, keys, _ = api
    k = h(keys["a"])
    _add(client, keys["a"], "shoes", 5)
    _add(client, keys["a"], "hat", 5)
    r = client.post("/v2/models", json={"model": {"id": "m", "output_info": {
        "data": {"concepts": [{"id": "shoes"}, {"id": "hat"}]},
        "output_config": {"concepts_mutually_exclusive": True, "closed_environment": True}}}}, headers=k)
    assert r.status_code == 200 and r.json()["model"]["model_version"]["status"]["code"] == 21102
    r = client.post("/v2/models/m/versions", headers={**k, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text  # the JS client trains with no body
    version = r.json()["model"]["model_version"]
    assert version["status"]["code"] == 21100
    query = b64(dataset_images(CLOTHING / "test" / "hat", 1)[0])
    r = client.post(f"/v2/models/m/versions/{version['id']}/outputs", headers=k, json={
        "inputs": [{"data": {"image": {"base64": query}}}],
        "model": {"output_info": {"output_config": {"max_concepts": 1, "min_value": 0.0}}}})
    out = r.json()["outputs"][0]
    assert [c["id"] for c in out["data"]["concepts"]] == ["hat"] and 0 <= out["data"]["concepts"][0]["value"] <= 1
    assert out["loupe"]["neighbours"] and set(out["data"]) == {"concepts"} and out["model"]["id"] == "m"
    r = client.post("/v2/models/m/versions/" + version["id"] + "/metrics", headers=k, json={})
    assert r.json()["model_version"]["metrics"]["status"]["code"] in (21303, 21301, 21300)
    for _ in range(200):
        metrics = client.get(f"/v2/models/m/versions/{version['id']}/metrics", headers=k).json()["model_version"]["metrics"]
        if metrics["status"]["code"] == 21300:
            break
        import time
        time.sleep(0.05)
    assert metrics["summary"]["macro_avg_roc_auc"] > 0.8 and metrics["confusion_matrix"]["concept_ids"] == ["shoes", "hat"]
    hits = client.post("/v2/searches", headers=k, json={"query": {"ands": [
        {"output": {"input": {"data": {"image": {"base64": query}}}}},
        {"input": {"data": {"concepts": [{"name": "hat", "value": 1.0}]}}}]}}).json()["hits"]
    assert len(hits) == 5 and all(h_["input"]["id"].startswith("hat-") for h_ in hits)
    assert all(0 <= h_["score"] <= 1 for h_ in hits)
    advice = client.get("/v2/models/m/advice", headers=k).json()["findings"]
    assert any(f["kind"] == "few_examples" for f in advice)
    assert client.post("/v2/models/m/feedback", headers=k, json={"input": {"id": "hat-0"}}).status_code == 200


class _Images(http.server.BaseHTTPRequestHandler):
    photo = dataset_images(CLOTHING / "train" / "shoes", 1)[0].read_bytes()

    def do_GET(self):  # noqa: N802 - http.server's naming
        routes = {"/shoe.jpg": (200, "image/jpeg", self.photo), "/page": (200, "text/html", b"<html></html>"),
                  "/big": (200, "image/jpeg", b"\xff" * (3 * 1024 * 1024))}
        if self.path == "/redirect-inside":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
            return
        status, kind, body = routes.get(self.path, (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def image_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_inputs_are_fetched_safely(api, image_server, tmp_path, shared_backbones):
    client, keys, loupe = api
    k = h(keys["a"])
    ok = client.post("/v2/inputs", headers=k, json={"inputs": [{"id": "u", "data": {"image": {"url": image_server + "/shoe.jpg"}}}]})
    assert ok.status_code == 200 and ok.json()["inputs"][0]["data"]["image"]["url"] == image_server + "/shoe.jpg"
    for path, reason in (("/page", "did not return an image"), ("/big", "limit is 2 MB"),
                         ("/missing", "HTTP 404"), ("/redirect-inside", "non-public address")):
        r = client.post("/v2/inputs", headers=k, json={"inputs": [
            {"id": "x1", "data": {"image": {"url": image_server + path}}},
            {"id": "x2", "data": {"image": {"url": image_server + "/shoe.jpg"}}}]})
        assert r.status_code == 400, r.text
        statuses = [i["status"] for i in r.json()["inputs"]]
        assert statuses[0]["code"] == 30002 and reason in statuses[0]["details"], statuses
        assert statuses[1]["code"] == 30001  # not stored: the batch is all or nothing
    # Without the allow-list, loopback and private addresses are refused outright.
    strict = Loupe(Config(data_dir=tmp_path / "strict", auto_retrain=False), backbones=shared_backbones)
    strict.apps.create("s")
    key = strict.keys.create("s")
    with TestClient(create_app(strict)) as c:
        for url in (image_server + "/shoe.jpg", "http://10.0.0.1/x.jpg", "http://169.254.169.254/", "file:///etc/passwd"):
            r = c.post("/v2/inputs", headers=h(key), json={"inputs": [{"data": {"image": {"url": url}}}]})
            assert r.status_code == 400 and r.json().get("inputs", [{}])[0].get("status", {}).get("code") == 30002, (url, r.text)
    assert loupe.inputs.count("a") == 1


def test_workflow_runs_several_models_on_one_image(api):
    client, keys, _ = api
    k = h(keys["a"])
    _add(client, keys["a"], "shoes", 4)
    _add(client, keys["a"], "hat", 4)
    # "is-hat" has one concept: with closed_environment false the shoes are its negatives.
    for model_id, concepts, closed in (("kind", ["shoes", "hat"], True), ("is-hat", ["hat"], False)):
        client.post("/v2/models", headers=k, json={"model": {"id": model_id, "output_info": {
            "data": {"concepts": [{"id": c} for c in concepts]}, "output_config": {"closed_environment": closed}}}})
        assert client.post(f"/v2/models/{model_id}/versions", headers=k).json()["model"]["model_version"]["status"]["code"] == 21100
    r = client.post("/v2/workflows", headers=k, json={"workflows": [{"id": "both", "nodes": [
        {"id": "n1", "model": {"id": "kind"}}, {"id": "n2", "model": {"id": "is-hat"}}]}]})
    assert r.status_code == 200, r.text
    query = b64(dataset_images(CLOTHING / "test" / "hat", 1)[0])
    r = client.post("/v2/workflows/both/results", headers=k, json={"inputs": [{"data": {"image": {"base64": query}}}]})
    outputs = r.json()["results"][0]["outputs"]
    assert [o["model"]["id"] for o in outputs] == ["kind", "is-hat"]
    assert outputs[0]["data"]["concepts"][0]["id"] == "hat"
    assert client.post("/v2/workflows", headers=k, json={"workflows": [{"id": "bad", "nodes": [
        {"model": {"id": "missing"}}]}]}).status_code == 404
    assert client.post("/v2/workflows/nope/results", headers=k, json={"inputs": [{"data": {"image": {"base64": query}}}]}).status_code == 404


def test_crop_is_applied(api):
    """Clarifai's crop [top, left, bottom, right]: the left half of a photo is a different image."""
    import io

    from PIL import Image

    client, keys, loupe = api
    k = h(keys["a"])
    photo = dataset_images(CLOTHING / "train" / "dress", 1)[0]
    body = {"inputs": [{"id": "half", "data": {"image": {"base64": b64(photo), "crop": [0.0, 0.0, 1.0, 0.5]}}},
                       {"id": "whole", "data": {"image": {"base64": b64(photo)}}}]}
    assert client.post("/v2/inputs", headers=k, json=body).status_code == 200
    full = Image.open(photo)
    half = Image.open(io.BytesIO(loupe.inputs.image("a", "half")))
    assert half.size == (round(full.width * 0.5), full.height)
    assert loupe.inputs.get("a", "half").sha256 != loupe.inputs.get("a", "whole").sha256
    r = client.post("/v2/inputs", headers=k, json={"inputs": [{"data": {"image": {"base64": b64(photo), "crop": [0.5, 0, 0.2, 1]}}}]})
    assert r.status_code == 400 and "bottom > top" in r.json()["status"]["description"]


def test_model_listing_pages_over_built_in_and_custom_models(api):
    """Built-in models come first; pages of any size walk every model once (a page past the first with
    per_page 1000 was refused before); built-ins list and name their one version; min_value is checked."""
    client, keys, loupe = api
    for i in range(5):
        loupe.models.create("a", f"m{i}", concept_ids=["hat"])
    ids = []
    for page in range(1, 6):
        ids += [m["id"] for m in client.get(f"/v2/models?page={page}&per_page=2", headers=h(keys["a"])).json()["models"]]
    assert ids[:2] == ["aaa03c23b3724a16a56b629203edc62c", "bbb5f41425b8468d9b7a554ff10f8581"]
    assert sorted(ids[2:]) == [f"m{i}" for i in range(5)] and len(ids) == 7
    second = client.get("/v2/models?page=2&per_page=1000", headers=h(keys["a"]))
    assert second.status_code == 200 and second.json()["models"] == []
    versions = client.get("/v2/models/general-v1.3/versions", headers=h(keys["a"])).json()["model_versions"]
    assert len(versions) == 1
    one = client.get(f"/v2/models/general-v1.3/versions/{versions[0]['id']}", headers=h(keys["a"]))
    assert one.status_code == 200 and one.json()["model_version"]["id"] == versions[0]["id"]
    assert client.get("/v2/models/general-v1.3/versions/nope", headers=h(keys["a"])).status_code == 404
    bad = client.post("/v2/models/general-v1.3/outputs", headers=h(keys["a"]), json={
        "inputs": [{"data": {"image": {"base64": b64(dataset_images(CLOTHING / "train" / "hat", 1)[0])}}}],
        "model": {"output_info": {"output_config": {"min_value": 3}}}})
    assert bad.status_code == 400 and "min_value" in bad.json()["status"]["description"]
