"""Runs a frozen torch image tower fast on CPU: inference mode, channels_last, bfloat16 autocast."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from loupe.backbones.base import l2_normalise


class TorchRunner:
    """Feeds preprocessed CHW arrays through `forward` in chunks and returns L2-normalised rows.

    `fast=False` is the plain fp32, contiguous-memory path; it exists so benchmarks can compare.
    On a CPU without bf16 support autocast would be slower than fp32, so it is only used where
    the CPU reports it (AVX512-BF16 / AMX on x86, or when torch says bf16 is supported).
    """

    def __init__(self, module: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                 *, chunk: int, fast: bool = True, bf16_batches: bool = True) -> None:
        self.fast = fast
        # Measured here: bf16 speeds convnets at every batch size, but ViT only at batch 1
        # (at 4-16 images its bf16 matmuls ran 3-6x slower than fp32), hence the switch.
        self.bf16_batches = bf16_batches
        self.chunk = max(1, chunk)
        self.module = module.eval()
        self.use_bf16 = fast and cpu_has_fast_bf16()
        if fast:
            self.module = self.module.to(memory_format=torch.channels_last)
        self._forward = forward

    def run(self, arrays: list[np.ndarray]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(arrays), self.chunk):
                x = torch.from_numpy(np.stack(arrays[start:start + self.chunk]))
                if self.fast:
                    x = x.contiguous(memory_format=torch.channels_last)
                bf16 = self.use_bf16 and (self.bf16_batches or len(x) == 1)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y = self._forward(x)
                out.append(y.float().numpy())
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, 0), np.float32)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
