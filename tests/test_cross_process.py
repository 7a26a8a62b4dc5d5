"""`loupe import` into the data dir of a running `loupe serve`: the server sees the new inputs and
labels at once (its caches notice the app's generation moved), without a restart."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys

import httpx
import pytest
from conftest import CLOTHING, dataset_images
from real_server import Server, new_app

pytestmark = pytest.mark.slow


def test_import_next_to_a_running_server(tmp_path):
    data = tmp_path / "data"
    key = new_app(data, "shared")
    server = Server(data).start()
    headers = {"Authorization": f"Key {key}"}
    try:
        with httpx.Client(base_url=server.base, headers=headers, timeout=120) as c:
            seed = [{"id": f"shoe-{i}", "data": {"image": {"base64": base64.b64encode(p.read_bytes()).decode()},
                                                  "concepts": [{"id": "shoes"}]}}
                    for i, p in enumerate(dataset_images(CLOTHING / "train" / "shoes", 4))]
            assert c.post("/v2/inputs", json={"inputs": seed}).status_code == 200
            c.post("/v2/models", json={"model": {"id": "m", "output_info": {"data": {"concepts": [{"id": "shoes"}, {"id": "hat"}]},
                   "output_config": {"concepts_mutually_exclusive": True}}}})
            assert c.post("/v2/searches", json={"query": {"ands": [{"output": {"input": {"id": "shoe-0", "data": {"image": {}}}}}]}}).status_code == 200

            folder = tmp_path / "photos" / "hat"
            folder.mkdir(parents=True)
            hats = dataset_images(CLOTHING / "train" / "hat", 4)
            for p in hats:
                shutil.copy(p, folder / p.name)
            result = subprocess.run([sys.executable, "-m", "loupe.cli", "--data-dir", str(data), "import",
                                     str(tmp_path / "photos"), "--app", "shared"], capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr

            query = base64.b64encode(hats[0].read_bytes()).decode()
            hits = c.post("/v2/searches", json={"query": {"ands": [{"output": {"input": {"data": {"image": {"base64": query}}}}}]}}).json()["hits"]
            assert hits[0]["input"]["id"] == f"hat:{hats[0].name}" and hits[0]["score"] > 0.999
            train = c.post("/v2/models/m/versions").json()["model"]["model_version"]
            assert train["status"]["code"] == 21100 and train["total_input_count"] == 8  # the imported hats count
            out = c.post("/v2/models/m/outputs", json={"inputs": [{"data": {"image": {"base64": query}}}]}).json()["outputs"][0]
            assert out["data"]["concepts"][0]["id"] == "hat"
            assert out["loupe"]["neighbours"][0]["input_id"] == f"hat:{hats[0].name}"
    finally:
        server.stop()
