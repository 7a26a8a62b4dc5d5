"""16 concurrent clients mix ingest, label edits, trains, predictions and searches against a real
server for a bounded time: no 5xx, no lost write, no deadlock, no half-built version seen."""

from __future__ import annotations

import random
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import base64_photos
from real_server import Server, new_app
from test_crash_safety import CLASSES

pytestmark = pytest.mark.slow

CLIENTS = 16
SECONDS = 10.0


def test_sixteen_clients_mixed_traffic(tmp_path, monkeypatch):
    data = tmp_path / "data"
    key = new_app(data, "load")
    images = base64_photos(CLASSES, 10)
    # Every version is kept (no retention) so that each one a prediction used can be checked below.
    monkeypatch.setenv("LOUPE_KEEP_VERSIONS", "0")
    server = Server(data)
    server.start()
    headers = {"Authorization": f"Key {key}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=120) as c:  # a trained model to start from
        seed = [{"id": f"seed-{i}", "data": {"image": {"base64": images[i]}, "concepts": [{"id": CLASSES[i // 10]}]}}
                for i in range(30)]
        assert c.post("/v2/inputs", json={"inputs": seed}).status_code == 200
        c.post("/v2/models", json={"model": {"id": "m", "output_info": {"data": {"concepts": [{"id": x} for x in CLASSES]},
               "output_config": {"concepts_mutually_exclusive": True, "closed_environment": True}}}})
        assert c.post("/v2/models/m/versions").json()["model"]["model_version"]["status"]["code"] == 21100

    acked: dict[str, set[str]] = {f"seed-{i}": {CLASSES[i // 10]} for i in range(30)}
    seen_versions: set[str] = set()
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    deadline = time.time() + SECONDS

    def client(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=server.base, headers=headers, timeout=120) as c:
            i = 0
            while time.time() < deadline:
                op = rng.choices(["ingest", "edit", "train", "predict", "search"], [3, 3, 1, 4, 4])[0]
                with lock:
                    known = list(acked)
                target = rng.choice(known)
                start = time.perf_counter()
                if op == "ingest":
                    input_id, cls = f"c{n}-{i}", rng.choice(CLASSES)
                    r = c.post("/v2/inputs", json={"inputs": [{"id": input_id, "data": {
                        "image": {"base64": rng.choice(images)}, "concepts": [{"id": cls}]}}]})
                    if r.status_code == 200:
                        with lock:
                            acked[input_id] = {cls}
                elif op == "edit":
                    tag = f"t{rng.randrange(4)}"
                    r = c.patch("/v2/inputs", json={"action": "merge", "inputs": [{"id": target, "data": {
                        "concepts": [{"id": tag}]}}]})
                    if r.status_code == 200:
                        with lock:
                            acked[target].add(tag)
                elif op == "train":
                    r = c.post("/v2/models/m/versions")
                elif op == "predict":
                    r = c.post("/v2/models/m/outputs", json={"inputs": [{"id": target}]})
                    if r.status_code == 200:
                        out = r.json()["outputs"][0]
                        assert {x["id"] for x in out["data"]["concepts"]} == set(CLASSES)
                        assert abs(sum(x["value"] for x in out["data"]["concepts"]) - 1) < 1e-3
                        with lock:
                            seen_versions.add(out["model"]["model_version"]["id"])
                else:
                    r = c.post("/v2/searches", json={"query": {"ands": [
                        {"output": {"input": {"id": target, "data": {"image": {}}}}}]}})
                with lock:
                    latencies.append(time.perf_counter() - start)
                    statuses.append(r.status_code)
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 120)
    assert not any(t.is_alive() for t in threads), "a client is stuck: deadlock?"

    assert statuses and max(statuses) < 500, sorted(set(statuses))
    ms = np.asarray(latencies) * 1000
    print(f"{len(statuses)} requests in {SECONDS:.0f} s from {CLIENTS} clients: {len(statuses) / SECONDS:.0f} req/s, "
          f"p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, status codes {sorted(set(statuses))}")
    with httpx.Client(base_url=server.base, headers=headers, timeout=120) as c:
        for input_id, concepts in acked.items():
            got = c.get(f"/v2/inputs/{input_id}").json()["input"]["data"]["concepts"]
            assert concepts <= {x["id"] for x in got if x["value"] == 1.0}, input_id
        for version_id in seen_versions:  # every version a prediction used was complete
            v = c.get(f"/v2/models/m/versions/{version_id}").json()["model_version"]
            assert v["status"]["code"] == 21100
    server.stop()
