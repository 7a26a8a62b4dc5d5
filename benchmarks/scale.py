"""Apps of 100k and 1M inputs, and the Ray import.

Synthetic inputs drawn around real embeddings: each is a Caltech-101 vector (EfficientNet-Lite2, from
the benchmark cache) plus Gaussian noise (mean cosine 0.86 to its source), labeled with its source's
class (100 classes), so neighbourhoods and classes look like a real app's. They are written through
the store's own write transactions (inputs, concepts, vectors; no image bytes), 10,000 a transaction.

Measured per size: add throughput, index build from LMDB (time, kind, bytes, process RSS), search p50/p99
through `loupe.search.by_vector` and recall@10 against exact search over the same vectors, a 100-concept
train over every input, and predict p50 from a stored input. With --ray: `loupe import` of the
Caltech-101 folder, plain and with --ray on a local Ray cluster (1 and 2 workers).

    python benchmarks/scale.py --sizes 100000,1000000 [--ray]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, write_result  # noqa: E402
from embedded_datasets import embedded  # noqa: E402
from synthetic import write_inputs  # noqa: E402

from loupe.application import Loupe  # noqa: E402
from loupe.config import Config  # noqa: E402

SIGMA = 0.6  # noise norm relative to a unit vector: mean cosine 0.86 to the source vector
QUERIES = 200


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):  # not LMDB's file-backed pages, which the kernel reclaims at will
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def jittered(base: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = base.shape[1]
    x = base[rows] + rng.standard_normal((len(rows), d), dtype=np.float32) * np.float32(SIGMA / np.sqrt(d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def measure_size(n: int, base: np.ndarray, labels: np.ndarray, classes: list[str], root: Path,
                 keep_data: bool = False) -> dict:
    rng = np.random.default_rng(n)
    keep = [c for c in np.unique(labels) if classes[c] != "BACKGROUND_Google"][:100]
    rows_by_class = [np.flatnonzero(labels == c) for c in keep]
    cls = rng.integers(0, len(keep), n)  # balanced over 100 classes
    rows = np.asarray([rows_by_class[c][rng.integers(0, len(rows_by_class[c]))] for c in cls])
    x = jittered(base, rows, rng)
    names = [classes[keep[c]] for c in cls]
    query_rows = rng.integers(0, n, QUERIES)
    queries = jittered(base, rows[query_rows], rng)
    exact = faiss.IndexFlatIP(base.shape[1])
    exact.add(x)
    _, truth = exact.search(queries, 10)
    del exact
    data_dir = root / f"scale-{n}"
    reuse = keep_data and (data_dir / "written").exists()
    if not reuse:
        shutil.rmtree(data_dir, ignore_errors=True)
    out: dict = {"inputs": n, "concepts": len(keep), "sigma": SIGMA}
    config = Config(data_dir=data_dir, auto_retrain=False, lmdb_map_size=64 * 1024**3)
    with Loupe(config) as loupe:
        if not reuse:
            loupe.apps.create("scale")
            seconds = write_inputs(loupe, "scale", x, names)
            out["add_inputs_per_s"] = round(n / seconds)
            out["add_seconds"] = round(seconds, 1)
            (data_dir / "written").touch()
        del x
        gc.collect()
        app = loupe.apps.get("scale")
        before = rss_mb()
        started = time.perf_counter()
        index = loupe.context.indexes.rebuild(app, base.shape[1])
        out["index_build_s"] = round(time.perf_counter() - started, 1)
        out["index_kind"] = index.kind
        out["index_mb"] = round(len(index.to_bytes()) / 1e6, 1)
        out["index_anon_rss_growth_mb"] = round(rss_mb() - before, 1)
        out["disk_gb"] = round(sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file()) / 1e9, 2)

        latencies, found = [], []
        for q in queries[:20]:
            loupe.search.by_vector(app.id, q, per_page=10)
        for q in queries:
            start = time.perf_counter()
            hits = loupe.search.by_vector(app.id, q, per_page=10)
            latencies.append(time.perf_counter() - start)
            found.append([int(h.input.id[1:]) for h in hits])
        out["search"] = percentiles(latencies)
        out["recall_at_10"] = round(float(np.mean([len(set(f) & set(t.tolist())) / 10
                                                   for f, t in zip(found, truth)])), 4)

        loupe.models.create("scale", "all", concept_ids=[classes[c] for c in keep], mutually_exclusive=True)
        started = time.perf_counter()
        version = loupe.trainer.train("scale", "all", wait=True)
        out["train_s"] = round(time.perf_counter() - started, 1)
        out["train_status"] = version.status
        out["train_size"] = version.train_size
        out["train_fit_s"] = round(version.train_seconds, 1)
        out["anon_rss_after_train_mb"] = round(rss_mb())

        ids = [f"s{i}" for i in rng.integers(0, n, QUERIES)]
        for input_id in ids[:20]:
            loupe.predictions.predict("scale", "all", [input_id])
        latencies = []
        for input_id in ids:
            start = time.perf_counter()
            loupe.predictions.predict("scale", "all", [input_id])
            latencies.append(time.perf_counter() - start)
        out["predict_stored"] = percentiles(latencies)
    if not keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)
    return out


def measure_ray_import(root: Path) -> dict:
    """Plain vs Ray import of Caltech-101 (9,144 photos), each into a fresh data dir whose backbone is
    compiled beforehand: overall images/s (Ray's start included) and the steady rate between 20 % and
    90 % of the photos (what more nodes multiply)."""
    from loupe.intake.folder_import import import_folder
    from loupe.scale.ray_import import ray_import_folder

    folder = DATASETS / "caltech101"
    out: dict = {}
    runs = [("plain", lambda lp, tick: import_folder(lp.inputs, folder, "c", progress=tick)),
            ("ray_1_worker", lambda lp, tick: ray_import_folder(lp, folder, "c", workers=1, progress=tick)),
            ("ray_2_workers", lambda lp, tick: ray_import_folder(lp, folder, "c", workers=2, progress=tick))]
    for name, run in runs:
        data_dir = root / f"import-{name}"
        shutil.rmtree(data_dir, ignore_errors=True)
        marks: list[tuple[int, float]] = []
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            marks.append((done[0], time.perf_counter()))

        with Loupe(Config(data_dir=data_dir)) as loupe:
            loupe.apps.create("c")  # compiles the backbone into this data dir, outside the timing
            started = time.perf_counter()
            report = run(loupe, tick)
            wall = time.perf_counter() - started
        total = report.found
        lo = next(m for m in marks if m[0] >= 0.2 * total)
        hi = next(m for m in marks if m[0] >= 0.9 * total)
        out[name] = {"photos": total, "embedded": report.embedded, "wall_s": round(wall, 1),
                     "images_per_s": round(total / wall, 1),
                     "steady_images_per_s": round((hi[0] - lo[0]) / (hi[1] - lo[1]), 1)}
        print(name, out[name], flush=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    for name in ("ray_1_worker", "ray_2_workers"):
        out[f"{name}_vs_plain"] = {"overall": round(out[name]["images_per_s"] / out["plain"]["images_per_s"], 3),
                                   "steady": round(out[name]["steady_images_per_s"]
                                                   / out["plain"]["steady_images_per_s"], 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="input counts; empty for none")
    parser.add_argument("--ray", action="store_true", help="also time the Ray import against the plain one")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs, and reuse them next run")
    parser.add_argument("--work-dir", default=tempfile.gettempdir(), help="where the data dirs go (GBs at 1M)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    data = embedded("caltech101")
    root = Path(args.work_dir)
    result: dict = {"sizes": []}
    for n in [int(s) for s in args.sizes.split(",") if s]:
        measured = measure_size(n, data.x, data.label, data.classes, root, args.keep)
        print(measured, flush=True)
        result["sizes"].append(measured)
    if args.ray:
        result["ray_import"] = measure_ray_import(root)
        print(result["ray_import"], flush=True)
    print(write_result("scale" if result["sizes"] else "scale_ray_import", result))


if __name__ == "__main__":
    main()
