"""Scale: the Ray import on a real local Ray cluster, the training lease across real processes, and
`loupe serve --workers 2` as two server processes over one data dir."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import CLOTHING, dataset_images
from real_server import Server, new_app

from loupe.application import Loupe
from loupe.config import Config
from loupe.intake.folder_import import import_folder
from loupe.models.leases import TrainLeases
from loupe.scale.ray_import import ray_import_folder
from loupe.store import Store

pytestmark = pytest.mark.slow

CLASSES = ("hat", "shoes", "dress")


def photo_folder(root: Path, per_class: int, start: int = 0) -> Path:
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for p in dataset_images(CLOTHING / "train" / name, per_class, start):
            shutil.copy(p, root / name / p.name)
    return root


def stored(loupe: Loupe, app_id: str) -> dict[str, tuple[list[str], np.ndarray, str]]:
    """input id -> (concepts, vector, sha256) as the store holds them."""
    out = {}
    with loupe.store.read() as tx:
        for record in tx.iter_inputs(app_id):
            out[record.id] = (record.concepts, tx.get_embedding("effnet-lite2", record.sha256), record.sha256)
    return out


def test_ray_import_stores_what_a_plain_import_stores(tmp_path, ray_local, shared_backbones):
    photos = photo_folder(tmp_path / "photos", 8)
    (photos / "hat" / "notes.jpg").write_bytes(b"this is not a photo")
    first_shoe = sorted((photos / "shoes").iterdir())[0]
    (photos / "dress" / "copy-of-a-shoe.jpg").write_bytes(first_shoe.read_bytes())  # same content, other name
    with Loupe(Config(data_dir=tmp_path / "plain"), backbones=shared_backbones) as plain:
        plain.apps.create("a")
        plain_report = import_folder(plain.inputs, photos, "a")
        expected = stored(plain, "a")
    with Loupe(Config(data_dir=tmp_path / "ray"), backbones=shared_backbones) as loupe:
        loupe.apps.create("a")
        report = ray_import_folder(loupe, photos, "a", workers=1, batch_size=8)
        got = stored(loupe, "a")
        with loupe.store.read() as tx:
            thumbs = [tx.get_thumbnail(sha) for _, _, sha in got.values()]
        # 25 inputs, 24 contents: the copy is stored after its original and embedded once
        assert report.added == plain_report.added == 25 and report.embedded == 24
        assert [f for f, _ in report.failed] == ["hat/notes.jpg"] and "not an image" in report.failed[0][1]
        assert got.keys() == expected.keys()
        for input_id, (concepts, vector, sha) in got.items():
            assert concepts == expected[input_id][0] and sha == expected[input_id][2]
            assert float(vector @ expected[input_id][1]) >= 0.999, input_id
        assert all(t is not None and t[:2] == b"\xff\xd8" for t in thumbs)  # JPEG thumbnails made on the actors
        # The index and search work on what the Ray import stored.
        query = first_shoe.read_bytes()
        assert loupe.search.by_image("a", query, per_page=1)[0].score > 0.999

        # Same photos into another app of this data dir: all content is stored, nothing is shipped.
        loupe.apps.create("b")
        again = ray_import_folder(loupe, photos, "b", workers=1)
        assert again.added == 25 and again.embedded == 0


def test_ray_import_killed_midway_resumes_with_only_the_missing_photos(tmp_path, ray_local, shared_backbones):
    photos = photo_folder(tmp_path / "photos", 20)
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "loupe.cli", "--data-dir", str(data), "import", str(photos),
                             "--app", "r", "--ray", "auto", "--batch-size", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 180
        count = 0
        while count < 8:
            assert proc.poll() is None, "the import ended before it could be killed"
            assert time.time() < deadline, "the import stored nothing"
            time.sleep(0.05)
            if (data / "store.lmdb").exists():
                store = Store(data / "store.lmdb", 1 << 30)
                with store.read() as tx:
                    count = tx.count_inputs("r") if tx.get_app("r") else 0
                store.close()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray cluster it started
        proc.wait(timeout=30)
    with Loupe(Config(data_dir=data), backbones=shared_backbones) as loupe:
        before = loupe.inputs.count("r")
        assert 8 <= before < 60
        report = ray_import_folder(loupe, photos, "r", workers=1, batch_size=8)
        assert report.skipped == before and report.embedded == 60 - before and not report.failed
        assert loupe.inputs.count("r") == 60
        assert loupe.context.index(loupe.apps.get("r")).count() == 60


LEASE_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from loupe.models.leases import TrainLeases
    from loupe.store import Store
    store = Store(Path(sys.argv[1]), 1 << 30)
    with TrainLeases(store).hold("app", "m", sys.argv[2], lambda lease: None):
        print("held", flush=True)
        time.sleep(float(sys.argv[3]))
""")


def hold_lease_elsewhere(path: Path, version_id: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, str(path), version_id, str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_model_trains_in_one_process_at_a_time(tmp_path):
    store = Store(tmp_path / "store.lmdb", 1 << 30)
    holder = hold_lease_elsewhere(tmp_path / "store.lmdb", "v-other", 1.5)
    started = time.perf_counter()
    taken_over = []
    with TrainLeases(store).hold("app", "m", "v-mine", taken_over.append):
        waited = time.perf_counter() - started
        with store.read() as tx:
            assert tx.get_train_lease("app", "m").version_id == "v-mine"
    assert waited >= 1.0 and not taken_over  # waited for the live holder, took nothing over
    assert holder.wait(timeout=10) == 0
    with store.read() as tx:
        assert tx.get_train_lease("app", "m") is None  # released
    store.close()


def test_a_killed_trainer_loses_its_lease_and_its_version_is_failed(tmp_path, shared_backbones):
    with Loupe(Config(data_dir=tmp_path / "data"), backbones=shared_backbones) as loupe:
        loupe.apps.create("app")
        photos = photo_folder(tmp_path / "photos", 4)
        import_folder(loupe.inputs, photos, "app")
        loupe.models.create("app", "m", concept_ids=list(CLASSES))
        first = loupe.trainer.train("app", "m")
        assert first.status == "trained"
        # Another process takes the lease for a version it is "training", and is killed.
        with loupe.store.write() as tx:
            tx.put_version("app", msgspec_replace(first, id="v-killed", status="training"))
        holder = hold_lease_elsewhere(tmp_path / "data" / "store.lmdb", "v-killed", 600)
        holder.kill()
        holder.wait()
        started = time.perf_counter()
        second = loupe.trainer.train("app", "m")
        assert second.status == "trained" and time.perf_counter() - started < 30
        killed = loupe.models.version("app", "m", "v-killed")
        assert killed.status == "failed" and "interrupted" in killed.detail


def msgspec_replace(version, **changes):
    import msgspec

    return msgspec.structs.replace(version, **changes)


def worker_pids(server: Server) -> list[int]:
    """Live worker processes of the server (not multiprocessing's resource tracker, not zombies)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                state, ppid = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[:2]
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if int(ppid) == server.proc.pid and state != "Z" and b"spawn_main" in cmdline:
                pids.append(int(entry))
    return pids


def test_two_server_workers_share_one_data_dir(tmp_path):
    data = tmp_path / "data"
    key = new_app(data, "w")
    server = Server(data, args=("--workers", "2")).start()
    headers = {"Authorization": f"Key {key}", "Connection": "close"}  # a new connection each: both workers answer
    b64 = {name: [base64.b64encode(p.read_bytes()).decode() for p in dataset_images(CLOTHING / "train" / name, 6)]
           for name in CLASSES}
    try:
        deadline = time.time() + 60
        while len(worker_pids(server)) < 2:
            assert time.time() < deadline
            time.sleep(0.1)
        with httpx.Client(base_url=server.base, headers=headers, timeout=120) as c:
            inputs = [{"id": f"{name}-{i}", "data": {"image": {"base64": data_}, "concepts": [{"id": name}]}}
                      for name in CLASSES for i, data_ in enumerate(b64[name][:4])]
            assert c.post("/v2/inputs", json={"inputs": inputs}).status_code == 200
            model = {"model": {"id": "m", "output_info": {"data": {"concepts": [{"id": n} for n in CLASSES]},
                                                          "output_config": {"concepts_mutually_exclusive": True}}}}
            assert c.post("/v2/models", json=model).status_code == 200
            query = {"inputs": [{"data": {"image": {"base64": b64["shoes"][5]}}}]}

            def every_worker_serves(version_id: str) -> float:
                """Seconds until 12 predictions in a row (new connections) all come from this version."""
                started = time.perf_counter()
                streak = 0
                while streak < 12:
                    out = c.post("/v2/models/m/outputs", json=query).json()["outputs"][0]
                    streak = streak + 1 if out["model"]["model_version"]["id"] == version_id else 0
                    assert time.perf_counter() - started < 10
                return time.perf_counter() - started

            for _ in range(2):  # train twice: each new version is served everywhere at once
                version = c.post("/v2/models/m/versions").json()["model"]["model_version"]
                assert version["status"]["code"] == 21100
                assert every_worker_serves(version["id"]) < 1.0

            # Two trains at once, likely on different workers: both finish, one after the other.
            with httpx.Client(base_url=server.base, headers=headers, timeout=120) as c2:
                import concurrent.futures as cf

                with cf.ThreadPoolExecutor(2) as pool:
                    done = list(pool.map(lambda client: client.post("/v2/models/m/versions").json(), [c, c2]))
            versions = c.get("/v2/models/m/versions", params={"per_page": 10}).json()["model_versions"]
            # Newest first: the four trains, then the untrained version the model was created with.
            assert [v["status"]["code"] for v in versions] == [21100] * 4 + [21102]
            assert {d["model"]["model_version"]["id"] for d in done} <= {v["id"] for v in versions}

            # A new input added through one worker is found by search through any other.
            extra = {"inputs": [{"id": "late-hat", "data": {"image": {"base64": b64["hat"][5]},
                                                            "concepts": [{"id": "hat"}]}}]}
            assert c.post("/v2/inputs", json=extra).status_code == 200
            search = {"query": {"ands": [{"output": {"input": {"data": {"image": {"base64": b64["hat"][5]}}}}}]}}
            for _ in range(8):
                assert c.post("/v2/searches", json=search).json()["hits"][0]["input"]["id"] == "late-hat"

            # kill -9 one worker: the other goes on answering, the supervisor starts a new one, nothing is lost.
            victim = worker_pids(server)[0]
            os.kill(victim, signal.SIGKILL)
            for _ in range(6):
                assert c.get("/v2/inputs", params={"per_page": 100}).status_code == 200
            deadline = time.time() + 60
            while victim in worker_pids(server) or len(worker_pids(server)) < 2:
                assert time.time() < deadline, "the killed worker was not replaced"
                time.sleep(0.2)
            assert len(c.get("/v2/inputs", params={"per_page": 100}).json()["inputs"]) == 13
    finally:
        server.stop()


def test_ray_import_joins_a_running_cluster_by_address(tmp_path):
    """`ray start --head` (token authentication on, as README shows), then `loupe import --ray ADDRESS`."""
    import secrets
    import socket as socket_module

    from real_server import free_port

    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
                             "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:  # the head's GCS port answers
            try:
                socket_module.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.time() < deadline, "ray start --head did not come up"
                time.sleep(0.2)
        photos = photo_folder(tmp_path / "photos", 4)
        data = tmp_path / "data"
        address = f"{socket_module.gethostbyname(socket_module.gethostname())}:{port}"
        run = subprocess.run([sys.executable, "-m", "loupe.cli", "--data-dir", str(data), "import", str(photos),
                              "--app", "joined", "--ray", address], env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "12 images found: 12 added" in run.stdout and "12 embedded" in run.stdout
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # this cluster only: `ray stop` would stop the session's too
        head.wait(timeout=60)
