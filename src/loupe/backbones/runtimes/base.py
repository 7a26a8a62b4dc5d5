"""The session protocol: a backbone (weights, preprocessing, dimension) is run by a session, so the
same backbone can be run by torch or by a compiled runtime, chosen in one place (the registry)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Session(Protocol):
    runtime: str  # "torch", ...
    precision: str  # "fp32", "bf16", ... as the network actually runs

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32[n, 3, h, w] preprocessed images -> float32[n, d] features (not normalised)."""
        ...


def run_in_chunks(session: Session, arrays: list[np.ndarray], chunk: int) -> np.ndarray:
    """Feed CHW arrays through the session `chunk` at a time; float32[n, d]."""
    out = [session.run(np.stack(arrays[start:start + chunk])) for start in range(0, len(arrays), max(1, chunk))]
    return np.concatenate(out).astype(np.float32, copy=False)
