"""Geo search at 100k geo-tagged inputs and video prediction speed, through the application object.

`python benchmarks/geo_video.py` writes results/geo_video.json. Geo: 100,000 inputs with random points
(half spread over the world, half around one city), radius searches of 10-50 miles and boxes, p50/p99
of `Loupe.search` (the Z-order LMDB index plus the exact check). Video: a 60 s clip at 25 fps made
here with PyAV, predicted by a trained custom model at one frame a second (60 frames), frames/s of the
whole call (decode + embed + predict). Uses only the photos in the repository (benchmarks/common.py
still expects ../shared beside the checkout, as every benchmark here does).
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import machine  # noqa: E402
from conftest import CLOTHING, dataset_images  # noqa: E402

from loupe.application import Loupe  # noqa: E402
from loupe.config import Config  # noqa: E402
from loupe.intake.embedding import VideoClip  # noqa: E402
from loupe.intake.inputs import NewInput  # noqa: E402
from loupe.search.query import SearchQuery  # noqa: E402
from loupe.store import geo  # noqa: E402
from loupe.store.records import GeoPoint, Input  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "geo_video.json"


def geo_search(loupe: Loupe, n: int = 100_000) -> dict:
    loupe.apps.create("geo")
    rng = np.random.default_rng(0)
    lat = np.concatenate([rng.uniform(-80, 80, n // 2), 40.7 + rng.normal(0, 0.3, n - n // 2)])
    lon = np.concatenate([rng.uniform(-180, 180, n // 2), -74.0 + rng.normal(0, 0.3, n - n // 2)])
    started = time.perf_counter()
    for start in range(0, n, 5000):  # the records only: a filter search reads no vectors
        with loupe.store.write() as tx:
            for seq in range(start, min(n, start + 5000)):
                tx.put_input("geo", Input(id=f"g{seq}", seq=seq + 1, sha256="-", created_at=0.0,
                                          geo=GeoPoint(longitude=float(lon[seq]), latitude=float(lat[seq]))))
    write_seconds = time.perf_counter() - started
    timings, counts = [], []
    for i in range(300):
        center = GeoPoint(longitude=float(rng.uniform(-74.5, -73.5)), latitude=float(rng.uniform(40.2, 41.2)))
        area = (geo.within(center, "withinMiles", [10, 25, 50][i % 3]) if i % 4 else
                geo.box(center, GeoPoint(longitude=center.longitude + 0.5, latitude=center.latitude + 0.5)))
        t = time.perf_counter()
        hits = loupe.search.run("geo", SearchQuery(geo=(area,), per_page=20))
        timings.append(time.perf_counter() - t)
        counts.append(len(hits))
    with loupe.store.read() as tx:
        t = time.perf_counter()
        matched = [len(tx.geo_seqs("geo", geo.within(GeoPoint(longitude=-74.0, latitude=40.7), "withinMiles", r)))
                   for r in (10, 50)]
        index_only = (time.perf_counter() - t) / 2
    ms = sorted(1000 * x for x in timings)
    return {"inputs": n, "write_seconds": round(write_seconds, 1), "searches": len(ms),
            "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(ms[int(0.99 * len(ms)) - 1], 2),
            "matches_within_10_and_50_miles_of_the_city": matched, "index_only_ms_mean": round(1000 * index_only, 2)}


def video_speed(loupe: Loupe) -> dict:
    import av
    from PIL import Image

    loupe.apps.create("video")
    hats, shoes = (dataset_images(CLOTHING / "train" / c, 8) for c in ("hat", "shoes"))
    labeled = (("hat", hats), ("shoes", shoes))
    loupe.inputs.add("video", [NewInput(image=p.read_bytes(), concepts=[c]) for c, ps in labeled for p in ps])
    loupe.models.create("video", "m", concept_ids=["hat", "shoes"], mutually_exclusive=True)
    loupe.trainer.train("video", "m")
    frames = [Image.open(p).convert("RGB").resize((640, 480)) for p in hats + shoes]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for i in range(60 * 25):
            out.mux(stream.encode(av.VideoFrame.from_image(frames[(i // 25) % len(frames)])))
        out.mux(stream.encode(None))
    data = buf.getvalue()
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        answer = loupe.predictions.predict("video", "m", [VideoClip(data)])
        runs.append(time.perf_counter() - t)
    sampled = len(answer.answers[0].frames)
    best = min(runs)
    return {"clip_seconds": 60, "fps_in_clip": 25, "size": "640x480", "bytes": len(data), "frames_sampled": sampled,
            "seconds_per_call": [round(r, 2) for r in runs], "sampled_frames_per_second": round(sampled / best, 1),
            "decoded_frames_per_second": round(60 * 25 / best, 1)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Loupe(Config(data_dir=Path(tmp), auto_retrain=False)) as loupe:
        result = {"machine": machine(), "geo": geo_search(loupe), "video": video_speed(loupe)}
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
