"""Runs a backbone network compiled by OpenVINO. Measured here (EfficientNet-Lite2, 2 cores): bf16
about 3 ms per image alone and ~340 images/s for 8 concurrent callers; torch's path ~26 ms / ~66."""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

# OpenVINO's names for the precisions Loupe records (its "f32" is Loupe's "fp32").
_HINTS = {"fp32": "f32", "bf16": "bf16"}


class OpenVinoSession:
    runtime = "openvino"

    def __init__(self, core: Any, model_path: str, precision: str, threads: int, requests: int,
                 mode: str = "latency") -> None:
        self.precision = precision
        # "latency": one stream over all cores answers a lone image fastest; "throughput": a stream per
        # core or two, for many concurrent callers (see docs/benchmarks.md for what each measured).
        self._compiled = core.compile_model(model_path, "CPU", {
            "INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": mode.upper(),
            "INFERENCE_NUM_THREADS": threads})
        # One infer request per concurrent caller: callers never share one (OpenVINO releases the GIL
        # while a request runs).
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(max(1, requests)):
            self._requests.put(self._compiled.create_infer_request())
        # In latency mode one stream runs one inference at a time anyway (8 concurrent callers measured
        # ~340 images/s against ~330 alone), so callers take turns: the CI's browser test twice found
        # two uploads' threads stuck for good inside OpenVINO, both copying their input into their own
        # request's tensor while resizing it for a new batch size. Throughput mode keeps its streams
        # busy concurrently and only takes turns to change a request's input shape.
        self._turns = threading.Lock()
        self._exclusive = mode == "latency"
        self._shapes: dict[int, tuple[int, ...]] = {}

    def run(self, batch: np.ndarray) -> np.ndarray:
        request = self._requests.get()
        try:
            data = np.ascontiguousarray(batch, np.float32)
            if self._exclusive or self._shapes.get(id(request)) != data.shape:
                with self._turns:
                    return self._infer(request, data)
            return self._infer(request, data)
        finally:
            self._requests.put(request)

    def _infer(self, request: Any, data: np.ndarray) -> np.ndarray:
        request.infer({0: data})
        self._shapes[id(request)] = data.shape
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
