"""Operating Loupe (issue 26, the parts built): an online backup taken during concurrent writes restores
every write acknowledged before it began and answers the same predictions; damaged, newer-format and
misplaced restores are refused; a store of a newer schema is refused at open."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import CLOTHING, REPO, dataset_images
from real_server import Server, free_port, new_app

from loupe.application import Loupe
from loupe.config import Config
from loupe.errors import InvalidArgument, StoreTooNew
from loupe.store import Store


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loupe.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_an_online_backup_restores_every_write_acknowledged_before_it(tmp_path):
    data = tmp_path / "data"
    key = new_app(data, "shop")
    headers = {"Authorization": f"Key {key}"}
    photos = [base64.b64encode(p.read_bytes()).decode()
              for c in ("hat", "shoes") for p in dataset_images(CLOTHING / "train" / c, 10)]
    server = Server(data).start()
    acked: list[tuple[float, str, str]] = []  # (when acknowledged, input id, concept)
    stop = threading.Event()

    def write() -> None:
        with httpx.Client(base_url=server.base, headers=headers, timeout=60) as http:
            i = 0
            while not stop.is_set():
                concept = "hat" if i % 2 == 0 else "shoes"
                body = {"inputs": [{"id": f"in-{i}", "data": {"image": {"base64": photos[i % len(photos)]},
                                                               "concepts": [{"id": concept, "value": 1}]}}]}
                if http.post("/v2/inputs", json=body).status_code == 200:
                    acked.append((time.time(), f"in-{i}", concept))
                i += 1

    writer = threading.Thread(target=write)
    try:
        writer.start()
        while len(acked) < 8:
            time.sleep(0.05)
        began = time.time()
        result = cli("--data-dir", str(data), "backup", str(tmp_path / "backup"))
        assert result.returncode == 0, result.stderr
        while len(acked) < len([a for a in acked if a[0] <= began]) + 3:  # writes went on meanwhile
            time.sleep(0.05)
        stop.set()
        writer.join(timeout=60)
        before = {input_id: concept for at, input_id, concept in acked if at <= began}
        manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
        assert manifest["schema"] >= 2 and len(manifest["sha256"]) == 64
        assert not (tmp_path / "backup" / "indexes").exists()  # caches are left out: they rebuild
        restored = tmp_path / "restored"
        result = cli("--data-dir", str(restored), "restore", str(tmp_path / "backup"))
        assert result.returncode == 0, result.stderr
        assert "restored" in result.stdout
        with Loupe(Config(data_dir=restored)) as loupe:
            ids = {r.id: r.concepts for r in loupe.inputs.list_page("shop", per_page=1000)}
            assert set(before) <= set(ids), sorted(set(before) - set(ids))
            assert all(ids[i] == [c] for i, c in before.items())
            loupe.models.create("shop", "m", concept_ids=["hat", "shoes"], mutually_exclusive=True)
        # The restored server answers predictions exactly as the original does (same data, same model).
        with httpx.Client(base_url=server.base, headers=headers, timeout=60) as http:
            assert http.post("/v2/models", json={"model": {"id": "m", "output_info": {
                "data": {"concepts": [{"id": "hat"}, {"id": "shoes"}]},
                "output_config": {"concepts_mutually_exclusive": True}}}}).status_code == 200
        server.stop()
        # Both train from identical stores: hold the original to the restore's inputs.
        with Loupe(Config(data_dir=data)) as original:
            for record in original.inputs.list_page("shop", per_page=1000):
                if record.id not in ids:
                    original.inputs.delete("shop", [record.id])
        answers = []
        for folder in (data, restored):
            one = Server(folder).start()
            try:
                with httpx.Client(base_url=one.base, headers=headers, timeout=60) as http:
                    assert http.post("/v2/models/m/versions").status_code == 200
                    r = http.post("/v2/models/m/outputs", json={"inputs": [{"id": i} for i in sorted(before)[:6]]})
                    answers.append([[(c["id"], round(c["value"], 5)) for c in o["data"]["concepts"]]
                                    for o in r.json()["outputs"]])
            finally:
                one.stop()
        assert answers[0] == answers[1]
    finally:
        stop.set()
        if server.proc.poll() is None:
            server.stop()


def test_damaged_newer_and_misplaced_restores_are_refused(tmp_path):
    data = tmp_path / "data"
    new_app(data, "shop")
    assert cli("--data-dir", str(data), "backup", str(tmp_path / "b")).returncode == 0
    assert cli("--data-dir", str(data), "backup", str(tmp_path / "b")).returncode != 0  # not into a used folder
    # Into a data dir that holds a store: refused, the store untouched.
    result = cli("--data-dir", str(data), "restore", str(tmp_path / "b"))
    assert result.returncode != 0 and "already holds a store" in result.stderr + result.stdout
    # A newer format: refused before anything is written.
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "data.mdb").write_bytes((tmp_path / "b" / "data.mdb").read_bytes())
    (tmp_path / "newer" / "manifest.json").write_text(json.dumps({**manifest, "schema": 99}))
    result = cli("--data-dir", str(tmp_path / "n"), "restore", str(tmp_path / "newer"))
    assert result.returncode != 0 and "newer format" in result.stderr + result.stdout
    assert not (tmp_path / "n" / "store.lmdb" / "data.mdb").exists()
    # A damaged copy (one byte changed): refused.
    raw = bytearray((tmp_path / "b" / "data.mdb").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "b" / "data.mdb").write_bytes(bytes(raw))
    result = cli("--data-dir", str(tmp_path / "d"), "restore", str(tmp_path / "b"))
    assert result.returncode != 0 and "damaged" in result.stderr + result.stdout
    assert not (tmp_path / "d" / "store.lmdb" / "data.mdb").exists()


def test_a_store_of_a_newer_schema_is_refused_at_open(tmp_path):
    store = Store(tmp_path / "s", 1 << 28)
    with store.write(audited=False) as tx:
        tx._put("counters", b"schema", (99).to_bytes(8, "big"))
    store.close()
    with pytest.raises(StoreTooNew, match="newer Loupe"):
        Store(tmp_path / "s", 1 << 28)


def test_a_store_written_by_an_earlier_loupe_restores_and_opens(tmp_path, shared_backbones):
    """tests/fixtures/store-schema-*: backups of stores as each schema's Loupe wrote them (made by
    tests/fixtures/make_store_fixture.py). Each must restore and open in this Loupe, migrated where older,
    with its inputs, labels, trained model, users and keys working."""
    from loupe.store.lmdb_store import SCHEMA_VERSION

    fixtures = sorted((REPO / "tests" / "fixtures").glob("store-schema-*"))
    assert fixtures and max(int(f.name.rsplit("-", 1)[1]) for f in fixtures) == SCHEMA_VERSION, \
        "the schema changed: run tests/fixtures/make_store_fixture.py and keep the older fixtures"
    for fixture in fixtures:
        expected = json.loads((fixture / "expected.json").read_text())
        data = tmp_path / fixture.name
        result = cli("--data-dir", str(data), "restore", str(fixture))
        assert result.returncode == 0, result.stderr
        with Loupe(Config(data_dir=data, auto_retrain=False), backbones=shared_backbones) as loupe:
            inputs = {r.id: r for r in loupe.inputs.list_page("shop", per_page=100)}
            assert len(inputs) == 7 and inputs["hat-1"].concepts == ["hat"] and inputs["hat-1"].metadata == {"n": 1}
            assert inputs["query"].geo is not None and inputs["query"].concepts == []
            answer = loupe.predictions.predict("shop", "m", ["query"])
            assert answer.version.id == expected["version"]
            scores = {c.concept_id: c.value for c in answer.predictions[0].concepts}  # as when it was written
            assert scores.keys() == expected["scores"].keys()
            assert all(abs(scores[c] - expected["scores"][c]) < 1e-4 for c in scores), (scores, expected)
            assert loupe.users.authenticate("owner", "the owner's password") is not None
            record = loupe.keys.verify(expected["key"])
            assert record is not None and record.app_id == "shop"


def test_the_documented_systemd_unit_verifies(tmp_path):
    import re
    import shutil

    from conftest import REPO

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    text = (REPO / "docs" / "operations.md").read_text()
    unit = re.search(r"```ini\n(.*?)```", text, re.S).group(1)
    loupe = shutil.which("loupe") or sys.executable
    path = tmp_path / "loupe.service"
    path.write_text(unit.replace("/usr/local/bin/loupe", loupe).replace("User=loupe\n", "").replace("Group=loupe\n", ""))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    # systemd-analyze answers 0 even for unknown keys or bad values; it names the file in each complaint.
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "loupe.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_request_ids_round_trip_into_answers_headers_and_json_logs(tmp_path):
    import os

    from real_server import free_port

    data = tmp_path / "data"
    key = new_app(data, "shop")
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "loupe.cli", "serve", "--port", str(port), "--log-format", "json"],
                            env={**os.environ, "LOUPE_DATA_DIR": str(data)}, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.1)
        headers = {"Authorization": f"Key {key}"}
        r = httpx.get(base + "/v2/inputs", headers={**headers, "X-Request-Id": "client-trace-42"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "client-trace-42"
        assert r.json()["status"]["req_id"] == "client-trace-42"
        missing = httpx.get(base + "/v2/inputs/nope", headers=headers)
        rid = missing.headers["x-request-id"]
        assert missing.status_code == 404 and missing.json()["status"]["req_id"] == rid and len(rid) == 32
        unsafe = httpx.get(base + "/v2/inputs", headers={**headers, "X-Request-Id": "bad id; drop table"})
        assert unsafe.headers["x-request-id"] != "bad id; drop table"  # a fresh id instead
        time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    lines = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry["logger"] == "loupe.access"]
    assert {"req_id": "client-trace-42", "path": "/v2/inputs", "status": 200} in [
        {k: e.get(k) for k in ("req_id", "path", "status")} for e in access]
    refused = [e for e in lines if e.get("req_id") == rid and e["logger"] != "loupe.access"]
    assert refused and "404" in refused[0]["message"]
    assert key not in (tmp_path / "server.log").read_text()  # keys are never logged


@pytest.mark.slow
def test_metrics_from_a_two_worker_server_after_real_traffic(tmp_path):
    import re

    data = tmp_path / "data"
    with Loupe(Config(data_dir=data)) as loupe:
        loupe.apps.create("shop")
        key = loupe.keys.create("shop")
        loupe.users.create("root", "root's password", admin=True)
        token = loupe.keys.create_token("root", name="admin")[0]
        scraper = loupe.keys.create_token("root", name="prometheus", scope="metrics")[0]
        with pytest.raises(InvalidArgument):
            loupe.keys.create("shop", "metrics")  # an app key never reads the metrics
    bind = free_port()
    server = Server(data, args=("--workers", "2", "--metrics-bind", f"127.0.0.1:{bind}")).start()
    try:
        app_key, admin = {"Authorization": f"Key {key}"}, {"Authorization": f"Key {token}"}
        photos = [base64.b64encode(p.read_bytes()).decode()
                  for c in ("hat", "shoes") for p in dataset_images(CLOTHING / "train" / c, 6)]
        with httpx.Client(base_url=server.base, timeout=120) as http:
            for i, b in enumerate(photos):  # one request each: the two workers share them
                concept = "hat" if i < 6 else "shoes"
                r = http.post("/v2/inputs", headers=app_key, json={"inputs": [{"id": f"photo-{i}", "data": {
                    "image": {"base64": b}, "concepts": [{"id": concept, "value": 1}]}}]})
                assert r.status_code == 200, r.text
            assert http.post("/v2/models", headers=app_key, json={"model": {"id": "m", "output_info": {
                "data": {"concepts": [{"id": "hat"}, {"id": "shoes"}]}}}}).status_code == 200
            assert http.post("/v2/models/m/versions", headers=app_key).status_code == 200
            for _ in range(5):
                assert http.post("/v2/models/m/outputs", headers=app_key,
                                 json={"inputs": [{"id": "photo-1"}]}).status_code == 200
            assert http.get("/v2/inputs/photo-99", headers=app_key).status_code == 404
            assert http.get("/metrics").status_code == 401
            assert http.get("/metrics", headers=app_key).status_code in (401, 403)  # names every app
            # A URL inside the network is refused (and counted by outcome, not by URL).
            r = http.post("/v2/models/m/outputs", headers=app_key,
                          json={"inputs": [{"data": {"image": {"url": "http://10.0.0.1/cat.jpg"}}}]})
            assert r.status_code == 400, r.text
            # The scraper's token reads the metrics and nothing else.
            metrics_only = {"Authorization": f"Key {scraper}"}
            assert http.get("/metrics", headers=metrics_only).status_code == 200
            assert http.get("/v2/loupe/tokens", headers=metrics_only).status_code == 403
            assert http.get("/v2/users/me/apps/shop/inputs", headers=metrics_only).status_code == 403
            text = http.get("/metrics", headers=admin).text
        # --metrics-bind: the same numbers without a credential, on the private address only.
        deadline = time.time() + 30
        while True:
            try:
                unauthenticated = httpx.get(f"http://127.0.0.1:{bind}/metrics", timeout=5).text
                break
            except httpx.TransportError:
                assert time.time() < deadline, "nothing answers on --metrics-bind"
                time.sleep(0.2)
        assert 'loupe_app_inputs{app="shop"}' in unauthenticated
        assert 'loupe_url_fetches_total{outcome="refused"}' in unauthenticated
    finally:
        server.stop()

    def value(pattern: str) -> float:
        found = [float(m.group(1)) for m in re.finditer(pattern + r" ([0-9.e+]+)\n", text)]
        assert found, pattern
        return sum(found)

    assert value(r'loupe_http_requests_total\{method="POST",route="/v2/inputs",status="200"\}') == len(photos)
    assert value(r'loupe_http_requests_total\{method="POST",route="/v2/models/\{model_id\}/outputs",status="200"\}') == 5
    assert value(r'loupe_http_requests_total\{method="GET",route="/v2/inputs/\{input_id\}",status="404"\}') == 1
    assert value(r'loupe_http_request_seconds_count\{method="POST",route="/v2/inputs"\}') == len(photos)
    assert value(r'loupe_images_embedded_total\{backbone="effnet-lite2",embedder="[^"]+"\}') == len(photos)
    assert value(r'loupe_trains_total\{status="trained"\}') == 1
    assert value(r'loupe_app_inputs\{app="shop"\}') == len(photos)
    assert "photo-1" not in text  # no per-input labels
    assert value(r'loupe_url_fetches_total\{outcome="refused"\}') == 1 and "10.0.0.1" not in text


def test_metrics_bind_takes_only_a_loopback_or_private_address():
    import argparse

    from loupe.cli.output import private_address

    assert private_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert private_address("10.1.2.3:9464") == ("10.1.2.3", 9464)
    assert private_address("[::1]:9464") == ("::1", 9464)
    for bad in ("0.0.0.0:9464", "8.8.8.8:9464", "127.0.0.1:99999", "example.com:9464", "9464"):
        with pytest.raises(argparse.ArgumentTypeError):
            private_address(bad)
    # An address something already listens on is refused at start, with the reason.
    import socket

    from loupe.cli import _free
    from loupe.errors import LoupeError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(LoupeError, match="already in use"):
            _free("127.0.0.1", taken.getsockname()[1])


def test_config_precedence_flag_env_file_default_and_refusals(tmp_path):
    from loupe.config import resolve_config
    from loupe.errors import InvalidArgument

    file = tmp_path / "loupe.toml"
    file.write_text('retrain_delay_seconds = 5.0\nurl_allow_hosts = ["Images.Example"]\nkeep_versions = 7\n'
                    '[images]\nmax_bytes = 1000\n')
    env = {"LOUPE_RETRAIN_DELAY_SECONDS": "3", "LOUPE_KEEP_VERSIONS": "9"}
    resolved = resolve_config(env, file, keep_versions=11)
    config, source = resolved.config, {s.path: s.source for s in resolved.settings}
    assert (config.retrain_delay_seconds, source["retrain_delay_seconds"]) == (3.0, "env")  # env over file
    assert (config.keep_versions, source["keep_versions"]) == (11, "flag")  # flag over env over file
    assert (config.images.max_bytes, source["images.max_bytes"]) == (1000, "file")
    assert config.url_allow_hosts == ("images.example",) and source["url_allow_hosts"] == "file"
    assert source["images.max_pixels"] == "default" and config.images.max_pixels == Config().images.max_pixels
    # The file may also come from LOUPE_CONFIG.
    assert resolve_config({"LOUPE_CONFIG": str(file)}).config.keep_versions == 7
    for text, named in (("max_bitez = 1\n", "max_bitez"), ("[images]\nmax_bytes = 'lots'\n", "images.max_bytes"),
                        ("[imagez]\nmax_bytes = 1\n", "imagez"), ("keep_versions = [", "not valid TOML")):
        file.write_text(text)
        with pytest.raises(InvalidArgument, match=named.replace(".", r"\.")):
            resolve_config({}, file)
    # At start: a bad file stops the command with the reason (exit 2), before anything opens.
    result = cli("--config", str(file), "--data-dir", str(tmp_path / "d"), "apps", "list")
    assert result.returncode == 2 and "not valid TOML" in result.stderr
    assert not (tmp_path / "d").exists()
    file.write_text("keep_versions = 4\n[accounts]\nsession_idle_seconds = 60\n")
    result = cli("--config", str(file), "--data-dir", str(tmp_path / "d"), "config", "show", "--json")
    shown = {s["setting"]: s for s in json.loads(result.stdout)}
    assert shown["keep_versions"] == {"setting": "keep_versions", "value": 4, "source": "file"}
    assert shown["accounts.session_idle_seconds"]["source"] == "file"
    assert shown["data_dir"]["source"] == "flag"


def test_export_and_import_round_trip_through_csv_jsonl_folder_and_coco(tmp_path, shared_backbones):
    from loupe.intake.inputs import NewInput
    from loupe.store.records import BoundingBox, GeoPoint, Region, RegionConcept

    data = ["--data-dir", str(tmp_path / "data")]
    with Loupe(Config(data_dir=tmp_path / "data", auto_retrain=False), backbones=shared_backbones) as loupe:
        loupe.apps.create("shop")
        photos = [p.read_bytes() for c in ("hat", "shoes") for p in dataset_images(CLOTHING / "train" / c, 3)]
        loupe.inputs.add("shop", [
            NewInput(image=photos[0], id="a:1", concepts=["hat"], metadata={"sku": "h-1", "n": 3},
                     geo=GeoPoint(longitude=2.35, latitude=48.85)),
            NewInput(image=photos[1], id="b", concepts=["hat", "red"], not_concepts=["shoes"],
                     regions=[Region(id="r1", box=BoundingBox(top_row=0.1, left_col=0.2, bottom_row=0.6, right_col=0.9),
                                     concepts=[RegionConcept("red")])]),
            NewInput(image=photos[2], id="c"),  # unlabeled
            *[NewInput(image=p, id=f"s{i}", concepts=["shoes"]) for i, p in enumerate(photos[3:])]])
        original = {r.id: (r.sha256, r.concepts, r.not_concepts, r.metadata, r.geo)
                    for r in loupe.inputs.list_page("shop", per_page=100)}
    for fmt, listing in (("csv", "inputs.csv"), ("jsonl", "inputs.jsonl")):
        out = tmp_path / f"out-{fmt}"
        result = cli(*data, "export", str(out), "--app", "shop", "--format", fmt)
        assert result.returncode == 0 and "exported 6 input(s)" in result.stdout, result.stderr
        result = cli(*data, "import", f"--{fmt}", str(out / listing), "--app", f"copy-{fmt}")
        assert result.returncode == 0 and "6 added" in result.stdout, result.stderr
        again = cli(*data, "import", f"--{fmt}", str(out / listing), "--app", f"copy-{fmt}")
        assert "0 added, 6 already there" in again.stdout, again.stdout + again.stderr  # idempotent
    for fmt in ("folder", "coco"):
        assert cli(*data, "export", str(tmp_path / f"out-{fmt}"), "--app", "shop", "--format", fmt).returncode == 0
    # COCO back in: ids (Loupe's own field), images, concepts and boxes (COCO has no not-concepts or metadata).
    result = cli(*data, "import", "--coco", str(tmp_path / "out-coco" / "annotations.json"), "--app", "copy-coco")
    assert result.returncode == 0 and "6 added" in result.stdout, result.stderr
    with Loupe(Config(data_dir=tmp_path / "data", auto_retrain=False), backbones=shared_backbones) as loupe:
        for fmt in ("csv", "jsonl"):
            copy = {r.id: (r.sha256, r.concepts, r.not_concepts, r.metadata, r.geo)
                    for r in loupe.inputs.list_page(f"copy-{fmt}", per_page=100)}
            assert copy == original, fmt
        from_coco = {r.id: r for r in loupe.inputs.list_page("copy-coco", per_page=100)}
        assert {i: (r.sha256, sorted(r.concepts)) for i, r in from_coco.items()} == {
            i: (sha, sorted(concepts)) for i, (sha, concepts, *_) in original.items()}
        (region,) = from_coco["b"].regions
        assert [c.id for c in region.concepts] == ["red"]
        box = region.box
        assert [round(v, 3) for v in (box.top_row, box.left_col, box.bottom_row, box.right_col)] == [0.1, 0.2, 0.6, 0.9]
    assert sorted(p.name for p in (tmp_path / "out-folder").iterdir()) == ["_unlabeled", "hat", "labels.jsonl", "shoes"]
    coco = json.loads((tmp_path / "out-coco" / "annotations.json").read_text())
    assert len(coco["images"]) == 6 and {c["name"] for c in coco["categories"]} == {"hat", "red", "shoes"}
    assert len(coco["annotations"]) == 6  # hat, hat+red, three shoes; the unlabeled one has none
    # Bad rows are reported by line, and nothing is written.
    bad = tmp_path / "bad.jsonl"
    good = (tmp_path / "out-jsonl" / "inputs.jsonl").read_text().splitlines()
    bad.write_text("\n".join([good[0].replace('"file":"', '"file":"../out-jsonl/'), '{"id": "x"}',
                              '{"file": "a.jpg", "concepts": ["a/b"]}', "not json"]) + "\n")
    result = cli(*data, "import", "--jsonl", str(bad), "--app", "bad")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "3 bad row(s), nothing imported" in result.stderr and "line 2" in result.stderr and "line 4" in result.stderr
    # A COCO file: bad images are named by id, nothing is written.
    coco["annotations"][0]["category_id"] = 99
    coco["annotations"][1]["bbox"] = [0, 0, 10_000, 10]
    bad_coco = tmp_path / "out-coco" / "bad.json"
    bad_coco.write_text(json.dumps(coco))
    result = cli(*data, "import", "--coco", str(bad_coco), "--app", "bad")
    assert result.returncode == 2 and "2 bad row(s), nothing imported" in result.stderr, result.stderr
    assert "category 99" in result.stderr and "not inside" in result.stderr
    with Loupe(Config(data_dir=tmp_path / "data"), backbones=shared_backbones) as loupe:
        assert "bad" not in {s.app.id for s in loupe.apps.summaries()}
