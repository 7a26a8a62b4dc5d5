"""Runs a frozen torch network fast on CPU: inference mode, channels_last, bfloat16 autocast."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from loupe.backbones.runtimes.cpu import cpu_has_fast_bf16


class TorchSession:
    """`fast=False` is the plain fp32, contiguous-memory path; it exists so benchmarks can compare.
    On a CPU without bf16 support autocast would be slower than fp32, so it is only used where
    the CPU reports it (AVX512-BF16 / AMX).
    """

    runtime = "torch"

    def __init__(self, module: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                 *, fast: bool = True, bf16_batches: bool = True, bf16: bool = True) -> None:
        self.fast = fast
        # Measured here: bf16 speeds convnets at every batch size, but ViT only at batch 1
        # (at 4-16 images its bf16 matmuls ran 3-6x slower than fp32), hence the switch.
        self.bf16_batches = bf16_batches
        self.module = module.eval()
        self.use_bf16 = fast and bf16 and cpu_has_fast_bf16()
        self.precision = "bf16" if self.use_bf16 else "fp32"
        if fast:
            self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._forward = forward

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32))
            if self.fast:
                x = x.contiguous(memory_format=torch.channels_last)
            bf16 = self.use_bf16 and (self.bf16_batches or len(x) == 1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = self._forward(x)
            return y.float().numpy()
