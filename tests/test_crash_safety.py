"""Kill -9 a real `loupe serve` under concurrent ingest and label edits, at several points; after each
restart every acknowledged write is there with its labels, nothing half-written is visible, the vector
index agrees with the store, and the server started without manual repair."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import base64_photos
from real_server import Server, new_app

from loupe.application import Loupe
from loupe.config import Config

pytestmark = pytest.mark.slow

CLASSES = ("shoes", "hat", "dress")


class Ledger:
    """What the server acknowledged: input id -> concepts it must have."""

    def __init__(self):
        self.inputs: dict[str, set[str]] = {}
        self.lock = threading.Lock()


def traffic(server, key, ledger, images, stop, prefix):
    """Ingest threads post one labeled input per request; an editor merges extra concepts."""
    def ingest(worker):
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Key {key}"}, timeout=30) as c:
            i = 0
            while not stop.is_set():
                input_id = f"{prefix}-{worker}-{i}"
                cls = CLASSES[i % 3]
                body = {"inputs": [{"id": input_id, "data": {"image": {"base64": images[(worker * 7 + i) % len(images)]},
                                                              "concepts": [{"id": cls, "value": 1.0}]}}]}
                try:
                    r = c.post("/v2/inputs", json=body)
                except httpx.HTTPError:
                    return  # killed mid-request: not acknowledged
                assert r.status_code < 500, r.text
                if r.status_code == 200:
                    with ledger.lock:
                        ledger.inputs[input_id] = {cls}
                i += 1

    def edit():
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Key {key}"}, timeout=30) as c:
            k = 0
            while not stop.is_set():
                with ledger.lock:
                    known = [i for i in ledger.inputs if i.startswith(prefix)]
                if not known:
                    time.sleep(0.01)
                    continue
                target, tag = known[k % len(known)], f"tag{k % 5}"
                try:
                    r = c.patch("/v2/inputs", json={"action": "merge", "inputs": [
                        {"id": target, "data": {"concepts": [{"id": tag, "value": 1.0}]}}]})
                except httpx.HTTPError:
                    return
                assert r.status_code < 500, r.text
                if r.status_code == 200:
                    with ledger.lock:
                        ledger.inputs[target].add(tag)
                k += 1

    threads = [threading.Thread(target=ingest, args=(w,)) for w in range(3)] + [threading.Thread(target=edit)]
    for t in threads:
        t.start()
    return threads


def verify(server, key, ledger):
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Key {key}"}, timeout=60) as c:
        status = c.get("/v2/inputs/status").json()["counts"]["processed"]
        listed = []
        page = 1
        while batch := c.get(f"/v2/inputs?page={page}&per_page=200").json()["inputs"]:
            listed += batch
            page += 1
        assert len(listed) == status
        by_id = {i["id"]: {x["id"] for x in i["data"]["concepts"] if x["value"] == 1.0} for i in listed}
        for input_id, concepts in ledger.inputs.items():
            assert input_id in by_id, f"acknowledged input {input_id} lost"
            assert concepts <= by_id[input_id], (input_id, concepts, by_id[input_id])
        for input_id in list(by_id)[:: max(1, len(by_id) // 15)]:  # a sample: stored whole, indexed
            assert c.get(f"/v2/inputs/{input_id}/image").status_code == 200
            hits = c.post("/v2/searches", json={"query": {"ands": [
                {"output": {"input": {"id": input_id, "data": {"image": {}}}}}]}}).json()["hits"]
            assert hits and hits[0]["score"] > 0.999
        versions = []
        for m in c.get("/v2/models").json()["models"]:
            versions += c.get(f"/v2/models/{m['id']}/versions").json()["model_versions"]
        assert all(v["status"]["code"] not in (21103, 21101) for v in versions), "a version is stuck training"
    return len(by_id)


def index_matches_store(data):
    with Loupe(Config(data_dir=data, auto_retrain=False)) as loupe:
        app = loupe.apps.get("crash")
        with loupe.store.read() as tx:
            seqs = tx.input_seqs("crash")
        ids = loupe.context.index(app).ids()
        rebuilt = loupe.context.indexes.rebuilds
    np.testing.assert_array_equal(ids, np.sort(seqs))
    return rebuilt


def test_kill_minus_nine_loses_nothing_acknowledged(tmp_path):
    data = tmp_path / "data"
    key = new_app(data, "crash")
    images = base64_photos(CLASSES, 12)
    server = Server(data)
    ledger = Ledger()

    # 1. Killed in the middle of concurrent ingest and label edits.
    server.start()
    stop = threading.Event()
    threads = traffic(server, key, ledger, images, stop, "a")
    time.sleep(3.0)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(ledger.inputs) > 10
    server.start()
    verify(server, key, ledger)

    # 2. Killed during a train.
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Key {key}"}, timeout=60) as c:
        c.post("/v2/models", json={"model": {"id": "m", "output_info": {
            "data": {"concepts": [{"id": x} for x in CLASSES]}, "output_config": {"closed_environment": True}}}})
        train = threading.Thread(target=lambda: _quietly(lambda: c.post("/v2/models/m/versions")))
        train.start()
        deadline = time.time() + 30
        while True:  # wait until the new version is committed as queued/training, then kill
            versions = c.get("/v2/models/m/versions").json()["model_versions"]
            if len(versions) == 2:
                break
            assert time.time() < deadline
            time.sleep(0.005)
    server.kill()
    train.join(timeout=30)
    server.start()
    verify(server, key, ledger)
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Key {key}"}, timeout=60) as c:
        r = c.post("/v2/models/m/versions")  # and training works again
        assert r.json()["model"]["model_version"]["status"]["code"] == 21100

    # 3. Killed while shutting down (saving the index), under traffic; then a corrupt index file.
    stop = threading.Event()
    threads = traffic(server, key, ledger, images, stop, "b")
    time.sleep(1.5)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    for saved in (data / "indexes").glob("*.faiss"):
        saved.write_bytes(saved.read_bytes()[: len(saved.read_bytes()) // 2])
    server.start()
    count = verify(server, key, ledger)
    server.stop()
    assert count >= len(ledger.inputs)
    index_matches_store(data)
    audit_matches_store(data, key)


def audit_matches_store(data, key):
    """Three kills later: no write without its audit entry, no entry without its write. Replaying the
    audit's input changes in order gives exactly the stored inputs and their labels, every change by the key."""
    from loupe.accounts.audit import AuditQuery
    from loupe.store.records import ActorKind, AuditOp, Resource

    with Loupe(Config(data_dir=data, auto_retrain=False)) as loupe:
        key_id = loupe.keys.verify(key).id
        entries = list(reversed(list(loupe.audit.entries("crash", AuditQuery()))))  # oldest first
        with loupe.store.read() as tx:
            stored = {r.id: (sorted(r.concepts), sorted(r.not_concepts)) for r in tx.iter_inputs("crash")}
    replayed: dict[str, tuple[list[str], list[str]]] = {}
    for entry in entries:
        assert sum(entry.counts.values()) == len(entry.changes)  # one request's changes, none cut
        for change in entry.changes:
            if change.resource is not Resource.INPUT:
                continue
            assert entry.actor.kind is ActorKind.KEY and entry.actor.id == key_id
            if change.op is AuditOp.CREATE:
                assert change.id not in replayed, f"{change.id} created twice"
            else:
                assert change.id in replayed, f"{change.id} changed before it was created"
                assert change.before is not None and (sorted(change.before.concepts), sorted(change.before.not_concepts)) \
                    == replayed[change.id]
            assert change.op is not AuditOp.DELETE
            replayed[change.id] = (sorted(change.after.concepts), sorted(change.after.not_concepts))
    assert len(stored) > 10 and replayed == stored


def _quietly(fn):
    try:
        fn()
    except httpx.HTTPError:
        pass
