"""Memory soak: a real `loupe serve`, rounds of N concurrent predictions of *new* images (each one
decoded and embedded), server RSS after every round. The target is a flat line after warm-up.

App: 20 Clothing-10 photos per class, a 10-concept model. Each request carries a different photo
(the test split, resized to 256-2400 px so decode sizes vary), so nothing is answered from a cache.

    python benchmarks/soak_memory.py [--rounds 12] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import DATASETS, write_result  # noqa: E402
from real_server import Server  # noqa: E402

from loupe.application import Loupe  # noqa: E402
from loupe.config import Config  # noqa: E402
from loupe.intake.folder_import import import_folder  # noqa: E402

SIDES = (256, 2400)  # camera-sized photos too: large decodes are what fragments the allocator


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def photos(n: int) -> list[str]:
    files = sorted((DATASETS / "clothing10" / "test").rglob("*.jpg"))
    out = []
    for i in range(n):  # photos repeat past the split's end, at another size: new bytes, new embedding
        path = files[i % len(files)]
        img = Image.open(path).convert("RGB")
        side = SIDES[0] + (i * 37) % (SIDES[1] - SIDES[0])
        img = img.resize((side, side))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def prepare(data: Path) -> str:
    with Loupe(Config(data_dir=data, auto_retrain=False)) as loupe:
        loupe.apps.create("soak")
        train = DATASETS / "clothing10" / "train"
        small = data.parent / "small"
        for cls in sorted(p.name for p in train.iterdir()):
            (small / cls).mkdir(parents=True)
            for path in sorted((train / cls).glob("*.jpg"))[:20]:
                (small / cls / path.name).symlink_to(path)
        import_folder(loupe.inputs, small, "soak")
        concepts = sorted(p.name for p in train.iterdir())
        loupe.models.create("soak", "m", concept_ids=concepts, mutually_exclusive=True)
        loupe.trainer.train("soak", "m")
        return loupe.keys.create("soak")


async def one_round(client: httpx.AsyncClient, images: list[str]) -> int:
    async def predict(b64: str) -> int:
        r = await client.post("/v2/models/m/outputs", json={"inputs": [{"data": {"image": {"base64": b64}}}]})
        return r.status_code

    codes = await asyncio.gather(*(predict(b) for b in images))
    return sum(1 for c in codes if c != 200)


async def soak(base: str, key: str, pid: int, rounds: int, concurrency: int) -> list[dict]:
    pool = photos(rounds * concurrency)
    rows = []
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Key {key}"}, timeout=300) as client:
        for r in range(rounds):
            start = time.perf_counter()
            errors = await one_round(client, pool[r * concurrency:(r + 1) * concurrency])
            rows.append({"round": r + 1, "seconds": round(time.perf_counter() - start, 2), "errors": errors,
                         "rss_mb": round(rss_mb(pid), 1)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--name", default="soak_memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        key = prepare(data)
        server = Server(data).start()
        try:
            start_rss = rss_mb(server.proc.pid)
            rows = asyncio.run(soak(server.base, key, server.proc.pid, args.rounds, args.concurrency))
        finally:
            server.stop()
    warm = rows[min(2, len(rows) - 1)]["rss_mb"]
    growth = rows[-1]["rss_mb"] - warm
    print(f"RSS at start {start_rss:.0f} MB, after round 3 {warm:.0f} MB, at the end {rows[-1]['rss_mb']:.0f} MB "
          f"(+{growth:.0f} MB over {len(rows) - 3} rounds)")
    write_result(args.name, {"rounds": rows, "concurrency": args.concurrency, "rss_start_mb": round(start_rss, 1),
                             "rss_after_warmup_mb": warm, "growth_after_warmup_mb": round(growth, 1),
                             "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX", "")})


if __name__ == "__main__":
    main()
