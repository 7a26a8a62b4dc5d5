"""Embedding throughput per backbone: Loupe's path at batch 1 and 32 next to a naive per-image loop.

Every path decodes the JPEG bytes, preprocesses and runs the network, so the figures are end to end.
The naive loop is what one writes first: per image, fp32, default memory format, torch.no_grad.
CLIP runs with random weights (none can be had offline); speed does not depend on weight values.

    python benchmarks/embed.py [--images 96]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, timed, write_result  # noqa: E402

from loupe.backbones.registry import load_backbone  # noqa: E402
from loupe.config import Config, ImageLimits  # noqa: E402
from loupe.imaging import decode_image  # noqa: E402
from loupe.torchvision_compat import import_with_torchvision_fix  # noqa: E402

LIMITS = ImageLimits()


def naive_loop(backbone, module_forward, blobs: list[bytes]) -> None:
    with torch.no_grad():
        for data in blobs:
            image = decode_image(data, LIMITS).image
            x = torch.from_numpy(backbone.preprocess(image))[None]
            module_forward(x)


def loupe_path(backbone, blobs: list[bytes], batch: int) -> None:
    for start in range(0, len(blobs), batch):
        backbone.embed([decode_image(b, LIMITS).image for b in blobs[start:start + batch]])


def plain_model(backbone_id: str, config: Config):
    """A second copy of the same network, left in its default (fp32, contiguous) state."""
    if backbone_id.startswith("effnet"):
        from loupe.backbones.effnet_lite import EfficientNetLite

        b = EfficientNetLite(backbone_id.removeprefix("effnet-"), fast=False)
        return b, lambda x: b.model.forward_head(b.model.forward_features(x), pre_logits=True)
    from loupe.backbones.clip import ClipBackbone

    b = ClipBackbone(config.weights["clip-vit-b-32"], fast=False)
    return b, b.model.encode_image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--backbones", default="effnet-lite2,effnet-lite0,clip-vit-b-32")
    args = parser.parse_args()
    files = sorted((DATASETS / "clothing10" / "train").rglob("*.jpg"))
    rng = np.random.default_rng(0)
    blobs = [files[i].read_bytes() for i in rng.choice(len(files), args.images, replace=False)]

    tmp = Path(tempfile.mkdtemp())
    open_clip = import_with_torchvision_fix("open_clip")
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), tmp / "clip.pt")
    config = Config(data_dir=tmp, weights={"clip-vit-b-32": str(tmp / "clip.pt")})

    rows = []
    for backbone_id in args.backbones.split(","):
        backbone = load_backbone(backbone_id, config)
        naive, forward = plain_model(backbone_id, config)
        loupe_path(backbone, blobs[:8], 8)  # warm-up: first calls allocate and pick kernels
        naive_loop(naive, forward, blobs[:4])
        n = len(blobs)
        row = {
            "backbone": backbone_id,
            "naive_loop_img_s": n / timed(naive_loop, naive, forward, blobs),
            "loupe_batch1_img_s": n / timed(loupe_path, backbone, blobs, 1),
            "loupe_batch32_img_s": n / timed(loupe_path, backbone, blobs, 32),
        }
        row["batch32_speedup_vs_naive"] = row["loupe_batch32_img_s"] / row["naive_loop_img_s"]
        rows.append(row)
        print(f"{backbone_id:15s} naive {row['naive_loop_img_s']:6.1f} img/s | loupe b1 "
              f"{row['loupe_batch1_img_s']:6.1f} | b32 {row['loupe_batch32_img_s']:6.1f} img/s | "
              f"x{row['batch32_speedup_vs_naive']:.2f}", flush=True)
    path = write_result("embed", {"images": args.images, "threads": torch.get_num_threads(), "rows": rows})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
