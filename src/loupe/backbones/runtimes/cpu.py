"""What this CPU can do fast (recorded with benchmark figures: CPUs differ between machines)."""

from __future__ import annotations

import functools


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.split(":", 1)[-1].split())


def cpu_has_fast_bf16() -> bool:
    """Native bfloat16 matmuls (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_precision(asked: str) -> str:
    """"auto" -> bf16 where the CPU has native bf16, else fp32. Never left to the runtime (OpenVINO
    picks bf16 silently on such CPUs): the choice is recorded with the vectors it makes."""
    if asked == "auto":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if asked in ("f32", "fp32"):
        return "fp32"
    if asked == "bf16":
        return "bf16"
    raise ValueError(f"precision must be auto, fp32 or bf16, got {asked!r}")
