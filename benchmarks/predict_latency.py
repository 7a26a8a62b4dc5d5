"""In-process prediction latency from stored embeddings (no image decoding or embedding).

A 10-concept mutually exclusive model over all 3,781 Clothing-10 inputs (labels from their folders),
in the benchmark's Loupe store. Measures one input's embedding scored by the head plus neighbour
evidence from the app's FAISS index and current labels; also via input id (adds LMDB lookups) and a
batch of 32.

    python benchmarks/predict_latency.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from embedded_datasets import CACHE_DIR, embedded  # noqa: E402

from loupe.application import Loupe  # noqa: E402
from loupe.config import Config  # noqa: E402
from loupe.errors import NotFound  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def timed_calls(fn, n: int) -> list[float]:
    for _ in range(20):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    torch.set_num_threads(2)
    data = embedded("clothing10")
    app_id = "clothing10-effnet-lite2"
    with Loupe(Config(data_dir=CACHE_DIR, auto_retrain=False)) as loupe:
        try:
            loupe.models.delete(app_id, "latency")
        except NotFound:
            pass
        loupe.models.create(app_id, "latency", concept_ids=data.classes, mutually_exclusive=True,
                            closed_environment=True)
        version = loupe.trainer.train(app_id, "latency")
        app = loupe.apps.get(app_id)
        rng = np.random.default_rng(0)
        seqs = loupe.context.labels.get(app_id).entries
        picks = rng.choice(np.fromiter(seqs, np.int64), 64, replace=False)
        vectors = loupe.context.embeddings_of(app, picks)
        ids = [seqs[int(s)].input_id for s in picks]
        i = iter(range(10**9))
        one_vector = timed_calls(
            lambda: loupe.predictor.predict_vectors(app, "latency", vectors[next(i) % 64][None]), 2000)
        one_input = timed_calls(
            lambda: loupe.predictions.predict(app_id, "latency", [ids[next(i) % 64]]).predictions, 1000)
        batch = timed_calls(lambda: loupe.predictor.predict_vectors(app, "latency", vectors[:32]), 200)
        loupe.models.delete(app_id, "latency")
    result = {"inputs": len(data.input_ids), "concepts": len(data.classes), "train_seconds": version.train_seconds,
              "blend": {"head_weight": version.blend.head_weight, "k": version.blend.k},
              "stored_embedding": percentiles(one_vector), "by_input_id": percentiles(one_input),
              "batch_of_32": percentiles(batch), "target_p50_ms": 2.0}
    print(result)
    print(f"written to {write_result('predict_latency', result)}")


if __name__ == "__main__":
    main()
