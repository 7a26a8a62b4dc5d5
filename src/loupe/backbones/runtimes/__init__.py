"""Sessions: what runs a backbone's network (torch today; a compiled runtime can take its place)."""

from loupe.backbones.runtimes.base import Session, run_in_chunks
from loupe.backbones.runtimes.cpu import cpu_has_fast_bf16

__all__ = ["Session", "cpu_has_fast_bf16", "run_in_chunks"]
