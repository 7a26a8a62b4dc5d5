"""Training time of a model version (head fit + cross-validated blend choice), as a user waits for it.

Sizes from the spec: 10,000 labeled inputs x 10 concepts and 100,000 x 100, 1280-d. The vectors are
real EfficientNet-Lite2 embeddings (Clothing-10 for 10 concepts, Caltech-101 for 100) jittered with
noise and renormalised to reach the size, so class structure and conditioning are those of real data.
Also: a retrain warm-started from the previous head after 1% of the labels changed.

    python benchmarks/train_speed.py [--unlabeled-only]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from embedded_datasets import embedded  # noqa: E402

from loupe.learning.training import fit_version  # noqa: E402
from loupe.learning.training_set import TrainingSet  # noqa: E402


def synthetic(dataset: str, n: int, c: int, seed: int = 0):
    data = embedded(dataset)
    keep = [i for i, name in enumerate(data.classes) if name != "BACKGROUND_Google"][:c]
    rows = np.flatnonzero(np.isin(data.label, keep))
    rng = np.random.default_rng(seed)
    pick = rng.choice(rows, n, replace=True)
    x = data.x[pick] + 0.02 * rng.standard_normal((n, data.x.shape[1])).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.searchsorted(keep, data.label[pick])
    positive = np.eye(c, dtype=bool)[y]
    ts = TrainingSet(np.arange(n, dtype=np.int64), [str(i) for i in range(n)], positive, ~positive,
                     np.zeros_like(positive))
    return x, ts, [data.classes[k] for k in keep], y


def with_unlabeled_inputs() -> list[dict]:
    """A whole train as a user waits for it, through the application: an app of 50,000 unlabeled inputs
    and 1-16 labels for each of 10 concepts, for the two default models (open environment, mutually
    exclusive and not) and the closed mutually exclusive one: the unlabeled vectors are read from LMDB
    and validated on (self-training; background negatives for the open multi-label model), labels
    already in memory as in a running server."""
    import shutil
    import tempfile

    from scale import write_inputs

    from loupe.application import Loupe
    from loupe.config import Config

    rows = []
    for shots in (1, 4, 16):
        x, _, concepts, y = synthetic("clothing10", 50_000 + 10 * shots, 10, seed=shots)
        labeled = set(np.concatenate([np.flatnonzero(y == j)[:shots] for j in range(10)]).tolist())
        names = [concepts[y[i]] if i in labeled else None for i in range(len(y))]
        data_dir = Path(tempfile.mkdtemp())
        try:
            with Loupe(Config(data_dir=data_dir, auto_retrain=False)) as loupe:
                loupe.apps.create("u")
                write_inputs(loupe, "u", x, names)
                # The writes above went straight to the store, which the application treats as another
                # process's: it catches up (index, label mirror) on its next use of the app, not in the timed train.
                loupe.apps.get("u")
                loupe.context.labels.get("u")
                for model, exclusive, closed in (("default mutually exclusive", True, False),
                                                  ("default multi-label", False, False),
                                                  ("closed mutually exclusive", True, True)):
                    model_id = model.replace(" ", "-")
                    loupe.models.create("u", model_id, concept_ids=concepts, mutually_exclusive=exclusive,
                                        closed_environment=closed)
                    start = time.perf_counter()
                    version = loupe.trainer.train("u", model_id, wait=True)
                    row = {"model": model, "labeled_per_concept": shots, "unlabeled": 50_000,
                           "train_seconds": round(time.perf_counter() - start, 3),
                           "fit_seconds": round(version.train_seconds, 3), "unlabeled_seen": version.unlabeled_seen,
                           "unlabeled_rule": version.unlabeled_rule,
                           "self_training_strength": version.self_training_strength}
                    rows.append(row)
                    print(row, flush=True)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def main() -> None:
    torch.set_num_threads(2)
    rows = []
    if "--unlabeled-only" in sys.argv:  # just the 50,000-unlabeled trains (results/train_speed_unlabeled.json)
        result = {"with_unlabeled_inputs": with_unlabeled_inputs(), "target_seconds": 2.0}
        print(f"written to {write_result('train_speed_unlabeled', result)}")
        return
    for dataset, n, c in (("clothing10", 10_000, 10), ("caltech101", 100_000, 100)):
        x, ts, concepts, y = synthetic(dataset, n, c)
        for me in (True, False):
            fit_version(x[:2000], TrainingSet(ts.seqs[:2000], ts.input_ids[:2000], ts.positive[:2000],
                                              ts.negative[:2000], ts.explicit_negative[:2000]), concepts, me)
            start = time.perf_counter()
            fitted = fit_version(x, ts, concepts, me)
            cold = time.perf_counter() - start
            flip = np.random.default_rng(1).choice(n, n // 100, replace=False)  # 1% of labels corrected
            pos = ts.positive.copy()
            pos[flip] = np.roll(pos[flip], 1, axis=1)
            edited = TrainingSet(ts.seqs, ts.input_ids, pos, ~pos, ts.explicit_negative)
            start = time.perf_counter()
            fit_version(x, edited, concepts, me, warm=fitted.head)
            warm = time.perf_counter() - start
            acc = float((fitted.head.logits(x).argmax(1) == y).mean())
            row = {"examples": n, "concepts": c, "mutually_exclusive": me, "cold_seconds": round(cold, 3),
                   "warm_retrain_seconds": round(warm, 3), "train_accuracy": round(acc, 4)}
            rows.append(row)
            print(row, flush=True)
    unlabeled = with_unlabeled_inputs()
    path = write_result("train_speed", {"rows": rows, "with_unlabeled_inputs": unlabeled,
                                        "targets": {"10000x10": 1.0, "100000x100": 10.0,
                                                    "50000_unlabeled_x10": 2.0}})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
