"""Requests/s of `loupe serve --workers N` for stored-input predictions and searches at concurrency 8.

Same app and model as http_load.py (12,925 inputs, a 10-concept model). The load comes from `wrk`
(C, one thread, 8 connections; `apt-get install wrk`), which takes far less of the 2 cores here than
a Python load generator, so the server's own scaling shows.

    python benchmarks/http_workers.py [--workers 1,2] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from http_load import prepare, start_server  # noqa: E402

LUA = """
local ids = %s
local counter = 0
request = function()
  counter = counter + 1
  local id = ids[(counter %% #ids) + 1]
  return wrk.format("POST", "%s", {["Authorization"] = "Key %s", ["Content-Type"] = "application/json"},
                    string.format('%s', id))
end
"""

CASES = {
    "predict_stored_input": ("/v2/models/m/outputs", '{"inputs": [{"id": "%s"}]}'),
    "search_by_input": ("/v2/searches",
                        '{"query": {"ands": [{"output": {"input": {"id": "%s", "data": {"image": {}}}}}]}}'),
}


def wrk(base: str, script: Path, seconds: int) -> dict:
    run = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", "-s", str(script), base],
                         capture_output=True, text=True, check=True)
    text = run.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)

    def ms(p: str) -> float:
        m = re.search(rf"\s{re.escape(p)}\s+([\d.]+)(us|ms|s)", text)
        value, unit = float(m.group(1)), m.group(2)
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)

    return {"throughput_rps": rps, "p50_ms": ms("50%"), "p99_ms": ms("99%"),
            "non_2xx": int(errors.group(1)) if errors else 0}


def serve(workers: int, key: str, ids: list[str], seconds: int, scripts: dict[str, Path]) -> dict:
    server, base = start_server({}, ("--workers", str(workers)))
    try:
        time.sleep(3)  # every worker up and its caches warm before timing
        out = {}
        for case, script in scripts.items():
            wrk(base, script, 3)  # warm-up: indexes and models loaded in every worker
            out[case] = wrk(base, script, seconds)
            print(f"workers={workers} {case}: {out[case]}", flush=True)
        return out
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk: apt-get install wrk")
    key, ids, _ = prepare()
    tmp = Path(tempfile.mkdtemp())
    scripts = {}
    for case, (path, body) in CASES.items():
        scripts[case] = tmp / f"{case}.lua"
        lua_ids = "{" + ", ".join(json.dumps(i) for i in ids[:500]) + "}"
        scripts[case].write_text(LUA % (lua_ids, path, key, body))  # the body's %s is Lua's, for the id
    by_workers = {int(n): serve(int(n), key, ids, args.seconds, scripts) for n in args.workers.split(",")}
    result = {"inputs": 12925, "concurrency": 8, "load_generator": "wrk -t1 -c8", "workers": by_workers}
    if 1 in by_workers:
        one = by_workers[1]
        result["speedup_vs_1_worker"] = {n: {case: round(r[case]["throughput_rps"] / one[case]["throughput_rps"], 2)
                                             for case in r} for n, r in by_workers.items() if n != 1}
    result["target"] = {"workers_2_predict_stored_input_speedup": 1.6}
    print(f"written to {write_result('http_workers', result)}")


if __name__ == "__main__":
    main()
