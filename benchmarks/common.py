"""Helpers shared by the benchmarks: dataset location, result files, timing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATASETS = HERE.parent.parent / "shared" / "datasets"
if not DATASETS.is_dir():
    raise SystemExit(f"the benchmarks measure on the full datasets (Clothing-10, Caltech-101), expected in {DATASETS}; "
                     "a plain clone has only the small photo sets the demo and the tests use")


def machine() -> dict:
    from loupe.backbones.runtimes import cpu_has_fast_bf16

    # Native bfloat16 decides which matmul dtype the backbone and large head fits use, so timings from
    # CPUs with and without it are not comparable.
    from loupe.backbones.runtimes.cpu import cpu_flags

    try:
        import openvino

        openvino_version = openvino.__version__
    except ImportError:
        openvino_version = "not installed"
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "openvino": openvino_version,
            "processor": platform.processor() or platform.machine(), "cpu_model": _cpu_model(),
            "native_bf16": cpu_has_fast_bf16(), "amx": any(f.startswith("amx") for f in flags), "cpu_flags": flags}


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start
