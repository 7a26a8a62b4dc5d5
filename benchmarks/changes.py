"""How long a change report takes on a large app: 100,000 inputs around 10 class centres (1280-d, written
through the store as benchmarks/scale.py does), 2,000 of them labeled; version 1 trained, half of one
concept's labels moved to another, version 2 trained; then the report of version 2 against version 1, cold (no
cached report), three times.

    python benchmarks/changes.py [--inputs 100000] [--labeled 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result  # noqa: E402
from synthetic import write_inputs  # noqa: E402

import loupe.models.changes as changes_module  # noqa: E402
from loupe.application import Loupe  # noqa: E402
from loupe.config import Config  # noqa: E402
from loupe.intake.labels import InputEdit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--labeled", type=int, default=2_000)
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Loupe(Config(data_dir=Path(tmp), auto_retrain=False)) as loupe:
        loupe.apps.create("big")
        dim = loupe.context.backbone(loupe.apps.get("big")).dim
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((10, dim)).astype(np.float32)
        classes = rng.integers(0, 10, args.inputs)
        x = centres[classes] + rng.standard_normal((args.inputs, dim)).astype(np.float32) * 1.5
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        write_inputs(loupe, "big", x.astype(np.float32),
                     [f"c{classes[i]}" if i < args.labeled else None for i in range(args.inputs)])
        loupe.models.create("big", "m", concept_ids=[f"c{i}" for i in range(10)], mutually_exclusive=True)
        first = loupe.trainer.train("big", "m", wait=True)
        zeros = [i for i in range(args.labeled) if classes[i] == 0]
        moved = zeros[:len(zeros) // 2]  # half of one concept's labels moved to another
        loupe.inputs.edit("big", "overwrite", [InputEdit(input_id=f"s{i}", concepts=["c1"]) for i in moved])
        second = loupe.trainer.train("big", "m", wait=True)
        assert first.status == second.status == "trained", (first.detail, second.detail)
        loupe.changes.report("big", "m", second.id, first.id)  # warm the index and label caches
        seconds = []
        for _ in range(3):
            loupe.changes._reports.clear()  # cold: no cached report
            started = time.perf_counter()
            report = loupe.changes.report("big", "m", second.id, first.id)
            seconds.append(time.perf_counter() - started)
        result = {"machine": machine(), "inputs": args.inputs, "labeled": args.labeled,
                  "max_compared": changes_module.MAX_COMPARED, "compared": report.compared,
                  "changed": report.changed, "changed_estimate": report.changed_estimate,
                  "seconds": [round(s, 3) for s in seconds],
                  "index": type(loupe.context.index(loupe.apps.get("big"))).__name__}
        print(result)
        if args.name:
            write_result(args.name, result)


if __name__ == "__main__":
    main()
