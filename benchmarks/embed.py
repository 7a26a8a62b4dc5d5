"""Embedding speed per backbone and runtime/precision, in one run on one CPU.

Columns: the network forward alone (images/s at batch 1 and 8, preprocessed arrays in) and Loupe's
end-to-end embedding (JPEG bytes -> decode + preprocess on the pool -> network -> vectors, batch 32).
Rows: the naive eager loop (fp32, default memory format, torch.no_grad), Loupe's torch path
(channels_last, bf16 autocast where the CPU has it: the default before the compiled runtime),
OpenVINO fp32 and OpenVINO bf16 (where the CPU has native bf16). CLIP runs with random weights
(none can be had offline); speed does not depend on weight values.

    python benchmarks/embed.py [--images 96] [--backbones effnet-lite2,clip-vit-b-32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, write_result  # noqa: E402

from loupe.backbones.registry import load_backbone, load_torch  # noqa: E402
from loupe.backbones.runtimes import cpu_has_fast_bf16  # noqa: E402
from loupe.backbones.torchvision_compat import import_with_torchvision_fix  # noqa: E402
from loupe.config import Config  # noqa: E402
from loupe.intake.image_pipeline import ImagePipeline  # noqa: E402
from loupe.store import Store  # noqa: E402


def rate(fn, n_images: int, seconds: float = 4.0) -> float:
    """Images per second of `fn` (which handles n_images per call), after a warm-up call."""
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * n_images / (time.perf_counter() - start)


def naive_forward(backbone_id: str, config: Config):
    """The same weights, eager fp32, default memory format, per call under no_grad."""
    torch_backbone = load_torch(backbone_id, Config(data_dir=config.data_dir, weights=config.weights,
                                                    precision="fp32"))
    tower = torch_backbone.image_tower().float()

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return tower(torch.from_numpy(batch)).numpy()

    return forward


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--backbones", default="effnet-lite2,effnet-lite0,clip-vit-b-32")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    files = sorted((DATASETS / "clothing10" / "train").rglob("*.jpg"))
    rng = np.random.default_rng(0)
    blobs = [files[i].read_bytes() for i in rng.choice(len(files), args.images, replace=False)]

    tmp = Path(tempfile.mkdtemp())
    open_clip = import_with_torchvision_fix("open_clip")
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), tmp / "clip.pt")
    weights = {"clip-vit-b-32": str(tmp / "clip.pt")}
    variants = [("torch", "auto"), ("openvino", "fp32")] + ([("openvino", "bf16")] if cpu_has_fast_bf16() else [])

    rows = []
    for backbone_id in args.backbones.split(","):
        first = load_backbone(backbone_id, Config(data_dir=tmp, weights=weights, runtime="torch"))
        size = first.preprocessing.size
        batch8 = rng.standard_normal((8, 3, size, size)).astype(np.float32)
        naive = naive_forward(backbone_id, Config(data_dir=tmp, weights=weights))
        row: dict = {"backbone": backbone_id, "naive_eager_fp32": {
            "forward_b1_img_s": round(rate(lambda: naive(batch8[:1]), 1, args.seconds), 1),
            "forward_b8_img_s": round(rate(lambda: naive(batch8), 8, args.seconds), 1)}}
        for runtime, precision in variants:
            config = Config(data_dir=tmp, weights=weights, runtime=runtime, precision=precision)
            backbone = load_backbone(backbone_id, config)
            session = backbone.session
            store = Store(tmp / f"store-{backbone_id}-{runtime}-{precision}", 1 << 30)
            pipeline = ImagePipeline(store, config.images, workers=config.decode_workers)

            def end_to_end(pipeline=pipeline, backbone=backbone) -> None:
                for start in range(0, len(blobs), 32):
                    pipeline.embed(backbone, pipeline.prepare(backbone, blobs[start:start + 32]))

            row[backbone.embedder] = {
                "forward_b1_img_s": round(rate(lambda s=session: s.run(batch8[:1]), 1, args.seconds), 1),
                "forward_b8_img_s": round(rate(lambda s=session: s.run(batch8), 8, args.seconds), 1),
                "end_to_end_b32_img_s": round(rate(end_to_end, len(blobs), args.seconds), 1),
            }
            pipeline.close()
            store.close()
        torch_key = next(k for k in row if k.startswith("torch/"))
        for key, figures in row.items():
            if key.startswith("openvino/"):
                figures["forward_b1_vs_torch_path"] = round(figures["forward_b1_img_s"]
                                                            / row[torch_key]["forward_b1_img_s"], 2)
                figures["forward_b8_vs_torch_path"] = round(figures["forward_b8_img_s"]
                                                            / row[torch_key]["forward_b8_img_s"], 2)
        rows.append(row)
        print(row, flush=True)
    print(f"written to {write_result('embed', {'images': len(blobs), 'rows': rows})}")


if __name__ == "__main__":
    main()
