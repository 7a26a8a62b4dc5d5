"""Hostile and broken input: each gets a 4xx with a message (or a per-input error status), nothing is
stored by a refused request, and the service keeps serving. Plus a bounded fuzz of the image decoder."""

from __future__ import annotations

import base64
import http.server
import io
import threading
import time

import numpy as np
import pytest
from conftest import CLOTHING, dataset_images, image_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from PIL import Image

from loupe.application import Loupe
from loupe.config import Config, ImageLimits
from loupe.errors import ImageError
from loupe.intake.imaging import decode_image
from loupe.service.app import create_app


@pytest.fixture(scope="module")
def api(tmp_path_factory, shared_backbones):
    loupe = Loupe(Config(data_dir=tmp_path_factory.mktemp("hostile"), auto_retrain=False,
                         url_allow_hosts=("127.0.0.1",), url_timeout_seconds=2.0),
                  backbones=shared_backbones)
    loupe.apps.create("a")
    key = loupe.keys.create("a")
    with TestClient(create_app(loupe, max_body_bytes=4 * 1024 * 1024)) as client:
        yield client, {"Authorization": f"Key {key}"}, loupe
    loupe.close()


def post_image(client, headers, data: bytes, input_id=None):
    item = {"data": {"image": {"base64": base64.b64encode(data).decode()}}}
    if input_id is not None:
        item["id"] = input_id
    return client.post("/v2/inputs", headers=headers, json={"inputs": [item]})


def assert_refused(r, *fragments):
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    status = r.json()["status"]
    text = f"{status.get('description', '')} {status.get('details', '')}"
    assert status["code"] != 10000 and status["description"]
    for fragment in fragments:
        assert fragment in text, text


def test_broken_and_odd_images(api):
    client, headers, loupe = api
    jpeg = dataset_images(CLOTHING / "train" / "shoes", 1)[0].read_bytes()
    before = loupe.inputs.count("a")
    assert_refused(post_image(client, headers, b""), "no image")  # empty base64 is no image at all
    assert_refused(post_image(client, headers, jpeg[: len(jpeg) // 3]), "truncated")
    assert_refused(post_image(client, headers, b"%PDF-1.4 not an image"), "not an image")
    assert_refused(post_image(client, headers, b"PK\x03\x04 a zip file"), "not an image")
    assert_refused(post_image(client, headers, image_bytes(Image.new("RGB", (9000, 9000)), "PNG")), "limit is 40 MP")
    assert_refused(post_image(client, headers, image_bytes(Image.new("RGB", (8, 8)), "ICO")), "not accepted")
    assert loupe.inputs.count("a") == before  # nothing stored by a refused request
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    odd = {
        "thin": image_bytes(Image.new("RGB", (1, 100_000)), "PNG"),
        "cmyk": image_bytes(Image.new("CMYK", (32, 32), (0, 200, 0, 0)), "JPEG"),
        "16bit": image_bytes(Image.fromarray((np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 50)), "PNG"),
        "palette": image_bytes(Image.new("P", (32, 32)), "PNG"),
        "animated": image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]),
    }
    for name, data in odd.items():
        r = post_image(client, headers, data, f"odd-{name}")
        assert r.status_code == 200, (name, r.text)


def test_bad_json_ids_and_types(api):
    client, headers, _ = api
    hat = base64.b64encode(dataset_images(CLOTHING / "train" / "hat", 1)[0].read_bytes()).decode()
    cases = {
        "oversized body": client.post("/v2/inputs", headers=headers, content=b"{" + b" " * (5 * 1024 * 1024) + b"}"),
        "deep nesting": client.post("/v2/searches", headers=headers, content=b'{"query":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        "wrong types": client.post("/v2/inputs", headers=headers, json={"inputs": [{"id": 5, "data": {"image": {"base64": 7}}}]}),
        "not an object": client.post("/v2/models", headers=headers, json=[1, 2, 3]),
        "bad page": client.get("/v2/inputs?page=-3", headers=headers),
        "huge page": client.get("/v2/inputs?per_page=100000", headers=headers),
        "unknown input": client.get("/v2/inputs/does-not-exist", headers=headers),
        "unknown model": client.post("/v2/models/nope/versions", headers=headers),
        "unknown version": client.get("/v2/models/nope/versions/nope", headers=headers),
        "id with dotdot": client.post("/v2/inputs", headers=headers, json={"inputs": [{"id": "..", "data": {"image": {"base64": hat}}}]}),
        "id with NUL": client.post("/v2/inputs", headers=headers, json={"inputs": [{"id": "a\u0000b", "data": {"image": {"base64": hat}}}]}),
        "10 kB id": client.post("/v2/inputs", headers=headers, json={"inputs": [{"id": "x" * 10_000, "data": {"image": {"base64": hat}}}]}),
        "slash in path": client.get("/v2/inputs/a%2Fb", headers=headers),
        "dotdot in path": client.get("/v2/inputs/..%2F..%2Fetc", headers=headers),
        "too many inputs": client.post("/v2/inputs", headers=headers, json={"inputs": [{"data": {"image": {"base64": hat}}}] * 129}),
        "model id slash": client.post("/v2/models", headers=headers, json={"model": {"id": "a/b"}}),
    }
    for name, r in cases.items():
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:200])
    r = client.post("/v2/inputs", headers=headers, json={"inputs": [{"id": "ünï-código-日本-🙂", "data": {
        "image": {"base64": hat}, "concepts": [{"id": "帽子"}, {"id": "шапка"}, {"id": "قبعة", "value": 0}]}}]})
    assert r.status_code == 200, r.text
    assert client.get("/v2/concepts/帽子", headers=headers).json()["concept"]["name"] == "帽子"
    assert client.get("/healthz").status_code == 200


class _Hostile(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/slow":
            time.sleep(5)
        if self.path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                for _ in range(100_000):
                    self.wfile.write(b"\xff" * 65536)
            except OSError:
                pass
            return
        if self.path.startswith("/to-private"):
            self.send_response(302)
            self.send_header("Location", "http://10.1.2.3/x.jpg")
            self.end_headers()
            return
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_hostile_urls(api):
    client, headers, loupe = api
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        before = loupe.inputs.count("a")
        for url, reason in ((base + "/slow", "took longer"), (base + "/endless", "larger than"),
                            (base + "/to-private", "non-public"), ("http://[::1]:9/x.jpg", "non-public"),
                            ("http://192.168.0.1/x.jpg", "non-public"), ("http://169.254.169.254/latest", "non-public"),
                            ("ftp://example.com/x.jpg", "http or https"), ("http:///nohost", "no host")):
            started = time.time()
            r = client.post("/v2/inputs", headers=headers, json={"inputs": [{"data": {"image": {"url": url}}}]})
            assert r.status_code == 400, (url, r.text)
            detail = r.json()["inputs"][0]["status"]
            assert detail["code"] == 30002 and reason in detail["details"], (url, detail)
            assert time.time() - started < 10
        assert loupe.inputs.count("a") == before
    finally:
        server.shutdown()
    assert client.get("/healthz").status_code == 200


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_decoder_fuzz(data):
    """Random bytes and damaged real images: a decoded RGB image or an ImageError, nothing else."""
    seeds = _seed_images()
    kind = data.draw(st.sampled_from(["random", "flip", "truncate", "splice"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=4096))
    else:
        blob = bytearray(data.draw(st.sampled_from(seeds)))
        if kind == "flip":
            for _ in range(data.draw(st.integers(1, 20))):
                blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            blob = blob[: data.draw(st.integers(0, len(blob)))]
        else:
            at = data.draw(st.integers(0, len(blob)))
            blob = blob[:at] + data.draw(st.binary(max_size=256)) + blob[at:]
        blob = bytes(blob)
    try:
        decoded = decode_image(blob, ImageLimits(max_pixels=4_000_000))
    except ImageError:
        return
    assert decoded.image.mode == "RGB" and decoded.width * decoded.height <= 4_000_000


_SEEDS: list[bytes] = []


def _seed_images() -> list[bytes]:
    if not _SEEDS:
        img = Image.open(dataset_images(CLOTHING / "train" / "dress", 1)[0]).convert("RGB").resize((48, 48))
        for fmt, kw in (("JPEG", {}), ("PNG", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {})):
            buf = io.BytesIO()
            img.save(buf, fmt, **kw)
            _SEEDS.append(buf.getvalue())
    return _SEEDS
