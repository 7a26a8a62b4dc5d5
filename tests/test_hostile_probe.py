"""Regression tests for the findings of probing a running server as an attacker (issue: hardening).
One test (or more) per finding, numbered as in the issue; each failed before its fix."""

from __future__ import annotations

import base64
import errno
import inspect
import socket
import threading
import time

import numpy as np
import pytest
from conftest import CLOTHING, base64_photos, dataset_images, image_bytes
from litestar.testing import TestClient
from PIL import Image
from real_server import Server, new_app

import loupe.intake.url_fetch as url_fetch
from loupe.application import Loupe
from loupe.apps import indexes as app_indexes_module
from loupe.config import Config
from loupe.errors import Busy, StorageFull, TooLong, UrlFetchError
from loupe.intake.inputs import NewInput
from loupe.models.training_queue import FairQueue
from loupe.service import models_routes
from loupe.service.app import create_app

CLASSES = ["hat", "shoes", "dress"]


@pytest.fixture(scope="module")
def probe(tmp_path_factory, shared_backbones):
    """App 'a' with a trained 3-concept model 'm'; app 'b' with its own model; tight limits."""
    loupe = Loupe(Config(data_dir=tmp_path_factory.mktemp("probe"), auto_retrain=False,
                         url_allow_hosts=("127.0.0.1",), url_timeout_seconds=1.5, url_max_concurrent=1,
                         training_queue_per_app=2, training_queue_total=3, max_feedback_per_app=3,
                         public_url="https://loupe.example.com"),
                  backbones=shared_backbones)
    for app in ("a", "b"):
        loupe.apps.create(app)
        items = [NewInput(image=p.read_bytes(), concepts=[cls])
                 for cls in CLASSES for p in dataset_images(CLOTHING / "train" / cls, 6)]
        loupe.inputs.add(app, items)
        loupe.models.create(app, "m", concept_ids=CLASSES, mutually_exclusive=True)
        loupe.trainer.train(app, "m")
    keys = {app: {"Authorization": f"Key {loupe.keys.create(app)}"} for app in ("a", "b")}
    with TestClient(create_app(loupe)) as client:
        yield client, keys, loupe
    loupe.close()


def url_input(url: str) -> dict:
    return {"inputs": [{"data": {"image": {"url": url}}}]}


# 1 ------------------------------------------------------------------ non-public addresses
NON_PUBLIC = ["100.100.100.200", "100.64.0.1", "2002:7f00:1::1", "64:ff9b::7f00:1", "64:ff9b:1::a9fe:a9fe",
              "::ffff:127.0.0.1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "fd00::1", "198.18.0.1", "240.0.0.1"]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_url_to_a_non_global_address_is_refused_without_connecting(address, monkeypatch):
    connects = []
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    monkeypatch.setattr(url_fetch.socket, "getaddrinfo",
                        lambda *a, **k: [(family, socket.SOCK_STREAM, 6, "", (address, 80))])
    monkeypatch.setattr(url_fetch.socket, "create_connection", lambda *a, **k: connects.append(a) or 1 / 0)
    with pytest.raises(UrlFetchError, match="non-public"):
        url_fetch.fetch_image("http://innocent.example/x.jpg", url_fetch.UrlPolicy())
    assert connects == []


def test_url_connects_to_the_address_that_was_checked(monkeypatch):
    """A second resolution (DNS rebinding) cannot send the connection elsewhere."""
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))]] +
                   [[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))]] * 5)
    monkeypatch.setattr(url_fetch.socket, "getaddrinfo", lambda *a, **k: next(answers))
    connects = []

    def refuse(address, *args, **kwargs):
        connects.append(address)
        raise ConnectionRefusedError

    monkeypatch.setattr(url_fetch.socket, "create_connection", refuse)
    with pytest.raises(UrlFetchError, match="cannot fetch"):
        url_fetch.fetch_image("http://rebinding.example/x.jpg", url_fetch.UrlPolicy())
    assert connects == [("93.184.216.34", 80)]


# 2 ------------------------------------------------------------------ one deadline per fetch
class _Drip:
    """A raw TCP server that answers with `script(conn)`; every connection on its own thread."""

    def __init__(self, script) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/x.jpg"
        self.script = script
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.recv(4096)
            self.script(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _drip_body(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(200):
        conn.sendall(b"\xff")
        time.sleep(0.1)


def _drip_headers(conn):
    for _ in range(200):
        conn.sendall(b"X-A: b\r\n" if _ else b"HTTP/1.1 200 OK\r\n")
        time.sleep(0.1)


def _endless_headers(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 500 + b"\r\n")


def _drip_chunks(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(200):
        conn.sendall(b"1\r\n\xff\r\n")
        time.sleep(0.1)


def _broken_chunks(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


@pytest.mark.parametrize("script", [_drip_body, _drip_headers, _drip_chunks])
def test_a_dripping_server_is_cut_off_at_the_deadline(script):
    server = _Drip(script)
    try:
        started = time.monotonic()
        with pytest.raises(UrlFetchError, match="took longer"):
            url_fetch.fetch_image(server.url, url_fetch.UrlPolicy(timeout_seconds=1.5, allow_hosts=("127.0.0.1",)))
        assert time.monotonic() - started < 3.0
    finally:
        server.close()


@pytest.mark.parametrize("script", [_endless_headers, _broken_chunks])
def test_malformed_answers_are_the_inputs_url_error_not_a_500(probe, script):
    client, keys, _ = probe
    server = _Drip(script)
    try:
        r = client.post("/v2/inputs", headers=keys["a"], json=url_input(server.url))
        assert r.status_code == 400, r.text
        assert r.json()["inputs"][0]["status"]["code"] == 30002
        r = client.post("/v2/models/m/outputs", headers=keys["a"], json=url_input(server.url))
        assert r.status_code == 400 and r.json()["status"]["code"] == 30002, r.text
    finally:
        server.close()


def _fetch_quietly(loupe: Loupe, url: str) -> None:
    with pytest.raises(UrlFetchError):  # the drip outlasts the deadline
        loupe.urls.fetch(url)


def test_concurrent_url_fetches_are_bounded(probe):
    """The probe's fixture allows 1 fetch in flight: a second request gets 429 at once, not a stall."""
    client, keys, loupe = probe
    server = _Drip(_drip_body)
    try:
        stalled = threading.Thread(target=_fetch_quietly, args=(loupe, server.url))
        stalled.start()
        time.sleep(0.2)
        started = time.monotonic()
        r = client.post("/v2/models/m/outputs", headers=keys["a"], json=url_input(server.url))
        assert r.status_code == 429 and r.headers["retry-after"], r.text
        assert time.monotonic() - started < 1.4  # waited a moment for a slot, not for the stalled fetch
        stalled.join()
        with pytest.raises(Busy):
            holder = threading.Thread(target=_fetch_quietly, args=(loupe, server.url))
            holder.start()
            time.sleep(0.2)
            try:
                loupe.urls.fetch(server.url)
            finally:
                holder.join()
    finally:
        server.close()


# 3 ------------------------------------------------------------------ key checked before the body
@pytest.mark.slow
def test_unauthenticated_upload_is_refused_before_its_body_is_read(tmp_path):
    new_app(tmp_path / "data", "x")
    server = Server(tmp_path / "data").start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /v2/inputs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 60000000\r\n\r\n" + b"{" + b" " * 1000)
            answer = sock.recv(4096)  # the other 59,999,000 bytes never come
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    finally:
        server.stop()


# 4 ------------------------------------------------------------------ predicted-concept search bounded
def test_predicted_concept_search_is_deduplicated_capped_and_cached(probe, monkeypatch):
    client, keys, loupe = probe
    clause = {"output": {"data": {"concepts": [{"id": "hat", "value": 1}]}}}
    r = client.post("/v2/searches", headers=keys["a"], json={"query": {"ands": [clause] * 100}})
    assert r.status_code == 400 and "at most" in r.json()["status"]["description"]
    many = [{"output": {"data": {"concepts": [{"id": c, "value": v}]}}} for c in CLASSES for v in (0, 1)] * 2
    many += [{"output": {"data": {"concepts": [{"id": f"other{i}"}]}}} for i in range(9)]
    r = client.post("/v2/searches", headers=keys["a"], json={"query": {"ands": many}})
    assert r.status_code == 400, r.text  # 6 distinct + 9 more predicted concepts: over the cap of 8

    calls = []
    original = loupe.predictor.predict_vectors
    monkeypatch.setattr(loupe.predictor, "predict_vectors", lambda *a, **k: calls.append(1) or original(*a, **k))
    r = client.post("/v2/searches", headers=keys["a"], json={"query": {"ands": [clause] * 20}})
    assert r.status_code == 200 and r.json()["hits"], r.text
    first = len(calls)
    assert first == 1  # 18 inputs: one chunk, scored once for all 20 clauses
    both = [clause, {"output": {"data": {"concepts": [{"id": "shoes", "value": 0}]}}}]
    r = client.post("/v2/searches", headers=keys["a"], json={"query": {"ands": both}})
    assert r.status_code == 200 and len(calls) == first  # same model version and labels: cached
    hats = {h["input"]["id"] for h in r.json()["hits"]}
    assert all(any(c["id"] == "hat" for c in h["input"]["data"]["concepts"]) for h in r.json()["hits"]) and hats


def test_predicted_concept_search_has_a_deadline(probe):
    client, keys, loupe = probe
    loupe.predictor._cache._scored.clear()
    with pytest.raises(TooLong):
        loupe.predictor.inputs_predicted(loupe.apps.get("a"), "hat", True, deadline=time.monotonic() - 1)


# 5 ------------------------------------------------------------------ fair, bounded training queue
def test_training_queue_takes_apps_in_turn_and_caps_each():
    queue = FairQueue(workers=1, per_app=3, total=10)
    gate, order = threading.Event(), []
    first = queue.submit("A", gate.wait)
    time.sleep(0.1)
    queued = [queue.submit("A", lambda i=i: order.append(f"A{i}")) for i in range(2)]
    with pytest.raises(Busy):
        queue.submit("A", lambda: None)
    b = queue.submit("B", lambda: order.append("B"))
    gate.set()
    for future in (first, *queued, b):
        future.result(timeout=5)
    assert order == ["A0", "B", "A1"]  # B waited for one job of A, not for all of them
    queue.shutdown()


def test_a_full_queue_answers_429_and_readiness_says_so(probe):
    client, keys, loupe = probe
    gate = threading.Event()
    blockers = [loupe.trainer.queue.submit("c", gate.wait) for _ in range(2)]
    try:
        version = loupe.models.version("a", "m")
        codes = [client.post(f"/v2/models/m/versions/{version.id}/metrics", headers=keys["a"]) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 429, 429], [r.text for r in codes]
        assert codes[1].headers["retry-after"]
        assert client.get("/readyz").status_code == 503  # 3 jobs: the queue's total
        assert client.get("/healthz").json()["ready"] is False
        status = client.get("/v2/loupe/status", headers=keys["a"]).json()
        assert status["training_jobs"]["this_app"] == 1 and "training queue is full" in status["reasons"][0]
        r = client.post("/v2/models/m/versions", headers=keys["b"])
        assert r.status_code == 429  # the queue's total holds for every app
        assert all(v.status != "queued" for v in loupe.models.versions("b", "m"))  # nothing left behind
    finally:
        gate.set()
        for blocker in blockers:
            blocker.result(timeout=5)
    deadline = time.time() + 30
    while loupe.trainer.queue.pending() and time.time() < deadline:
        time.sleep(0.05)
    assert client.get("/readyz").status_code == 200


def test_train_requests_await_the_queue_without_a_thread():
    assert inspect.iscoroutinefunction(models_routes.train.fn)
    assert "anyio.to_thread.run_sync(\n        functools.partial(loupe.trainer.submit_train" in inspect.getsource(models_routes.train.fn)


# 6 ------------------------------------------------------------------ model incarnations
def test_a_train_of_a_deleted_model_does_not_write_into_its_namesake(probe):
    _, _, loupe = probe
    loupe.models.create("a", "reborn", concept_ids=CLASSES)
    gate = threading.Event()
    blocker = loupe.trainer.queue.submit("z", gate.wait)  # the queue's one worker waits on this
    try:
        ticket = loupe.trainer.submit_train("a", "reborn")
        loupe.models.delete("a", "reborn")
        loupe.models.create("a", "reborn", concept_ids=["dress"])
    finally:
        gate.set()
    blocker.result(timeout=5)
    ticket.done.result(timeout=60)
    versions = loupe.models.versions("a", "reborn")
    assert [v.status for v in versions] == ["untrained"], versions
    assert all(v.concept_ids == ["dress"] for v in versions)


# 7 ------------------------------------------------------------------ feedback scoped and bounded
def test_feedback_is_scoped_to_the_apps_models_and_bounded(probe):
    client, keys, loupe = probe
    body = {"input": {"id": "x"}, "output": {"data": {"concepts": [{"id": "hat", "value": 1}]}}}
    assert client.post("/v2/models/nope/feedback", headers=keys["a"], json=body).status_code == 404
    assert client.post("/v2/models/m/versions/nope/feedback", headers=keys["a"], json=body).status_code == 404
    huge = {"blob": "x" * 100_000}
    assert client.post("/v2/models/m/feedback", headers=keys["a"], json=huge).status_code == 400
    codes = [client.post("/v2/searches/feedback", headers=keys["b"], json=body).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # the fixture allows 3 per app
    with loupe.store.read() as tx:
        assert tx.feedback_count("b") == 3


# 8 ------------------------------------------------------------------ 4xx, not 500
def test_client_mistakes_found_by_the_probe_are_4xx(probe):
    client, keys, loupe = probe
    hat = base64_photos(["hat"], 1)[0]
    for metadata in ({"n": 2**70}, {"n": -(2**64)}, {"deep": [2**65]}):
        r = client.post("/v2/inputs", headers=keys["a"], json={"inputs": [{"data": {"image": {"base64": hat},
                                                                                      "metadata": metadata}}]})
        assert r.status_code == 400 and "64-bit" in r.text, r.text
    r = client.post("/v2/inputs", headers=keys["a"], json={"inputs": [{"id": "🙂" * 128, "data": {"image": {"base64": hat}}}]})
    assert r.status_code == 400 and "bytes" in r.text, r.text
    r = client.post("/v2/models", headers=keys["a"], json={"model": {"id": "🙂" * 40}})
    assert r.status_code == 400, r.text
    r = client.post("/v2/inputs", headers=keys["a"], json=url_input("http://127.0.0.1:18600:80/x"))
    assert r.status_code == 400 and "malformed URL" in r.json()["inputs"][0]["status"]["details"], r.text
    r = client.patch("/v2/inputs", headers=keys["a"], json={"action": "merge", "inputs": [
        {"id": loupe.inputs.list_page("a", per_page=1)[0].id, "data": {"metadata": {"n": 2**80}}}]})
    assert r.status_code == 400, r.text


def test_a_full_store_answers_507_and_keeps_serving_reads(tmp_path, shared_backbones):
    loupe = Loupe(Config(data_dir=tmp_path / "data", lmdb_map_size=2 * 1024 * 1024, auto_retrain=False),
                  backbones=shared_backbones)
    loupe.apps.create("full")
    headers = {"Authorization": f"Key {loupe.keys.create('full')}"}
    rng = np.random.default_rng(0)  # noise PNGs do not compress: ~190 kB each, the 2 MiB map fills fast
    photos = [base64.b64encode(image_bytes(Image.fromarray(rng.integers(0, 255, (250, 250, 3), np.uint8)))).decode()
              for _ in range(30)]
    with TestClient(create_app(loupe)) as client:
        codes = []
        for photo in photos:
            codes.append(client.post("/v2/inputs", headers=headers,
                                     json={"inputs": [{"data": {"image": {"base64": photo}}}]}).status_code)
            if codes[-1] != 200:
                break
        assert codes[-1] == 507 and set(codes[:-1]) == {200}, codes
        stored = len(codes) - 1
        r = client.get("/v2/inputs?per_page=100", headers=headers)
        assert r.status_code == 200 and len(r.json()["inputs"]) == stored
        r = client.post("/v2/searches", headers=headers,
                        json={"query": {"ands": [{"output": {"input": {"data": {"image": {"base64": photos[0]}}}}}]}})
        assert r.status_code in (200, 507), r.text
        first = client.get("/v2/inputs?per_page=1", headers=headers).json()["inputs"][0]["id"]
        assert client.get(f"/v2/inputs/{first}/thumbnail", headers=headers).status_code == 200
    loupe.close()


def test_an_index_that_cannot_be_saved_does_not_fail_requests(probe, monkeypatch, tmp_path):
    client, keys, loupe = probe

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(app_indexes_module, "save_index", disk_full)
    app = loupe.apps.get("b")
    loupe.context.indexes.rebuild(app, loupe.context.backbone(app).dim)  # saves after building: must not raise
    hat = base64_photos(["hat"], 1, split="test")[0]
    r = client.post("/v2/searches", headers=keys["b"],
                    json={"query": {"ands": [{"output": {"input": {"data": {"image": {"base64": hat}}}}}]}})
    assert r.status_code == 200 and r.json()["hits"]


def test_storage_full_maps_to_507():
    from loupe.service.errors import to_api_error

    assert to_api_error(StorageFull("storage full")).http_status == 507


# 9 ------------------------------------------------------------------ response URLs
def test_image_urls_come_from_the_public_base_url_with_escaped_ids(probe):
    client, keys, _ = probe
    hat = base64_photos(["hat"], 1, split="test")[0]
    r = client.post("/v2/inputs", headers={**keys["a"], "Host": "evil.example"},
                    json={"inputs": [{"id": "x?y#z", "data": {"image": {"base64": hat}}}]})
    assert r.status_code == 200, r.text
    assert r.json()["inputs"][0]["data"]["image"]["url"] == "https://loupe.example.com/v2/inputs/x%3Fy%23z/image"
    assert client.get("/v2/inputs/x%3Fy%23z/image", headers=keys["a"]).status_code == 200


# 10 ----------------------------------------------------------------- transport
@pytest.mark.slow
def test_slow_headers_are_cut_off(tmp_path):
    new_app(tmp_path / "data", "x")
    server = Server(tmp_path / "data", args=("--header-timeout", "1")).start()
    try:
        socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(20)]
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # sends nothing at all
        time.sleep(1.6)
        for sock in [*socks, idle]:
            assert sock.recv(100) == b""  # closed by the server
            sock.close()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as ok:
            ok.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert ok.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        server.stop()


def test_page_headers_health_options_base64_and_duplicate_keys(probe):
    client, keys, _ = probe
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/v2/inputs").headers["x-content-type-options"] == "nosniff"  # on errors too
    health = client.get("/healthz").json()
    assert set(health) == {"status", "ready"}  # no app count for anyone
    status = client.get("/v2/loupe/status", headers=keys["a"])
    assert status.status_code == 200 and "backbones_loaded" in status.json()
    assert client.get("/v2/loupe/status").status_code == 401
    assert client.options("/v2/inputs").headers["allow"] == "DELETE, GET, OPTIONS, PATCH, POST"
    assert client.options("/v2/models/m/versions").headers["allow"] == "GET, OPTIONS, POST"
    raw = base64.b64decode(base64_photos(["shoes"], 1, split="test")[0])
    wrapped = base64.encodebytes(raw).decode()  # 76-column lines, as MIME tools write it
    assert "\n" in wrapped
    r = client.post("/v2/models/m/outputs", headers=keys["a"],
                    json={"inputs": [{"data": {"image": {"base64": wrapped}}}]})
    assert r.status_code == 200, r.text
    two = [("Authorization", keys["a"]["Authorization"]), ("Authorization", keys["b"]["Authorization"])]
    r = client.get("/v2/models", headers=two)
    assert r.status_code == 400 and "exactly one" in r.text


def test_every_api_route_needs_a_key(probe):
    """Enumerated from the route table: nothing but the page, its files, health, sign-in and the schema is
    open (both the app-key paths and the user-scoped /v2/users/me/apps/{app_id}/... ones)."""
    client, _, _ = probe
    public = {"/", "/healthz", "/readyz", "/v2/loupe/session"}
    checked = 0
    for route in client.app.routes:
        if route.path in public or route.path.startswith(("/static", "/schema")):
            continue
        path = route.path.replace("{", "").replace("}", "").replace(":str", "")
        for method in route.methods - {"OPTIONS", "HEAD"}:
            r = client.request(method, path, content=b"{}")
            assert r.status_code == 401, (method, route.path, r.status_code)
            checked += 1
    assert checked >= 2 * 46
    r = client.delete("/v2/loupe/session")  # the sign-in route is open, signing out is not
    assert r.status_code == 401


# 11 ----------------------------------------------------------------- memory
def test_decoding_and_embedding_new_images_is_gated(probe, monkeypatch):
    """However many requests bring new images at once, at most `embed_concurrency` decode and embed."""
    _, _, loupe = probe
    app = loupe.apps.get("a")
    backbone = loupe.context.backbone(app)
    running, peak, lock = [0], [0], threading.Lock()
    original = backbone.features

    def counting(images):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        try:
            return original(images)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(backbone, "features", counting)
    photos = [p.read_bytes() for p in dataset_images(CLOTHING / "train" / "skirt", 12, start=8)]
    threads = [threading.Thread(target=loupe.embedder.image_vectors, args=(app, [p])) for p in photos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= peak[0] <= loupe.config.embed_concurrency


def test_allocator_keeps_large_buffers_returnable():
    from loupe.allocator import keep_large_buffers_returnable

    assert keep_large_buffers_returnable()  # glibc here; the soak benchmark shows the effect

