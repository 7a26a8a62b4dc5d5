"""HTTP latency with a real `loupe serve` and an async load generator on 127.0.0.1.

App: all Clothing-10 and Caltech-101 photos (12,925 inputs, embedded once in benchmarks/.cache), a
10-concept mutually exclusive model. Concurrency 8 (and 1 for new images, whose cost is the embedding).
Cases: predict a stored input by id; predict a new 256-px JPEG sent as base64; visual search by a
stored input. The in-process figures they compare with are measured here too.

    python benchmarks/http_load.py [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, write_result  # noqa: E402
from embedded_datasets import CACHE_DIR, embedded  # noqa: E402

from loupe.application import Loupe  # noqa: E402
from loupe.config import Config  # noqa: E402
from loupe.errors import NotFound  # noqa: E402
from loupe.intake.folder_import import import_folder  # noqa: E402
from loupe.intake.imaging import decode_image  # noqa: E402

APP = "bench-http"


def prepare() -> tuple[str, list[str], float]:
    embedded("clothing10"), embedded("caltech101")  # make sure every vector is cached
    with Loupe(Config(data_dir=CACHE_DIR, auto_retrain=False)) as loupe:
        try:
            loupe.apps.get(APP)
        except NotFound:
            loupe.apps.create(APP)
            import_folder(loupe.inputs, DATASETS / "clothing10", APP)
            import_folder(loupe.inputs, DATASETS / "caltech101", APP)
            concepts = sorted(p.name for p in (DATASETS / "clothing10" / "train").iterdir())
            loupe.models.create(APP, "m", concept_ids=concepts, mutually_exclusive=True, closed_environment=True)
            loupe.trainer.train(APP, "m")
        key = loupe.keys.create(APP)
        ids = [e.input_id for e in list(loupe.context.labels.get(APP).entries.values())[:500]]
        backbone = loupe.context.backbone(loupe.apps.get(APP))
        images = [decode_image(b, loupe.config.images).image for b in new_jpegs(20)]
        backbone.embed(images[:2])
        start = time.perf_counter()
        for im in images:
            backbone.embed([im])
        embed_ms = (time.perf_counter() - start) / len(images) * 1000
    return key, ids, embed_ms


def new_jpegs(n: int) -> list[bytes]:
    """Test photos re-encoded (new bytes, so nothing is cached): 256 px on the longer side."""
    out = []
    for path in sorted((DATASETS / "clothing10" / "test").rglob("*.jpg"))[:n]:
        img = Image.open(path).convert("RGB")
        img.thumbnail((256, 256))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=88)
        out.append(buf.getvalue())
    return out


async def load(base: str, key: str, make_request, total: int, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Key {key}"}, timeout=60) as client:
        async def worker() -> None:
            nonlocal errors
            for i in counter:
                method, path, body = make_request(i)
                start = time.perf_counter()
                r = await client.request(method, path, json=body)
                latencies.append(time.perf_counter() - start)
                errors += r.status_code >= 400
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"requests": total, "concurrency": concurrency, "errors": errors,
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "throughput_rps": round(total / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--runtimes", default="torch,openvino,openvino:throughput",
                        help="one server per runtime[:mode], same run")
    args = parser.parse_args()
    key, ids, embed_ms = prepare()
    by_runtime = {runtime: serve_and_load(runtime, key, ids, args.requests) for runtime in args.runtimes.split(",")}
    result = {"inputs": 12925, "in_process_embed_ms": round(embed_ms, 2), "runtimes": by_runtime,
              "targets": {"predict_stored_input_p50_ms": 5, "predict_new_jpeg_c1_p50_ms": 15, "search_p50_ms": 10,
                          "predict_new_jpeg_c8_rps_vs_torch": 3.0}}
    if "torch" in by_runtime:
        torch_rps = by_runtime["torch"]["predict_new_jpeg_c8"]["throughput_rps"]
        result["new_jpeg_c8_rps_vs_torch"] = {name: round(r["predict_new_jpeg_c8"]["throughput_rps"] / torch_rps, 2)
                                              for name, r in by_runtime.items() if name != "torch"}
    print(f"written to {write_result('http_load', result)}")


def start_server(env: dict[str, str], args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """`loupe serve` over the benchmark cache on a free port, answering /healthz; (process, base URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "loupe.cli", "serve", "--port", str(port), *args],
                              env={**os.environ, "LOUPE_DATA_DIR": str(CACHE_DIR), **env}, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    return server, base


def serve_and_load(runtime: str, key: str, ids: list[str], n: int) -> dict:
    name, _, mode = runtime.partition(":")  # e.g. "openvino:throughput"
    server, base = start_server({"LOUPE_RUNTIME": name, "LOUPE_RUNTIME_MODE": mode or "latency"})
    try:
        jpegs = [base64.b64encode(b).decode() for b in new_jpegs(64)]
        stored = lambda i: ("POST", "/v2/models/m/outputs", {"inputs": [{"id": ids[i % len(ids)]}]})  # noqa: E731
        fresh = lambda i: ("POST", "/v2/models/m/outputs",  # noqa: E731
                           {"inputs": [{"data": {"image": {"base64": jpegs[i % len(jpegs)]}}}]})
        search = lambda i: ("POST", "/v2/searches", {"query": {"ands": [  # noqa: E731
            {"output": {"input": {"id": ids[i % len(ids)], "data": {"image": {}}}}}]}})
        asyncio.run(load(base, key, stored, 50, 8))  # warm-up
        asyncio.run(load(base, key, fresh, 16, 8))
        results = {
            "predict_stored_input": asyncio.run(load(base, key, stored, n, 8)),
            "predict_stored_input_c1": asyncio.run(load(base, key, stored, n // 2, 1)),
            "predict_new_jpeg_c8": asyncio.run(load(base, key, fresh, n // 4, 8)),
            "predict_new_jpeg_c1": asyncio.run(load(base, key, fresh, n // 8, 1)),
            "search_by_input": asyncio.run(load(base, key, search, n, 8)),
            "search_by_input_c1": asyncio.run(load(base, key, search, n // 2, 1)),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
    for name, row in results.items():
        print(f"{runtime:9s} {name:22s} {row}", flush=True)
    return results


if __name__ == "__main__":
    main()
