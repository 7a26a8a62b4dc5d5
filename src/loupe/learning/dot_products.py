"""Row-by-row dot products through torch, the same thread pool the head fits use.

numpy's OpenBLAS leaves its worker threads spinning for a while after each product; on 2 cores they
starve torch's threads in the L-BFGS fit that follows. Measured here: a 533-row cross-validation fold
fit took 80-150 ms after a numpy matmul and 40 ms without one, half of a 10k x 10 train. Training and
evaluation alternate such products with fits, so they take them from here.

Until torch is loaded (a process that only predicts and searches with a compiled backbone never
loads it) there is no torch thread to starve, and numpy does the product: the same float32 result.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def pairwise_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b.T for float32 row matrices [n, d] and [m, d] -> [n, m]."""
    torch = sys.modules.get("torch")
    if torch is None:
        return np.asarray(a, np.float32) @ np.asarray(b, np.float32).T
    return (_tensor(torch, a) @ _tensor(torch, b).T).numpy()


def _tensor(torch: Any, x: np.ndarray) -> Any:
    x = np.ascontiguousarray(x, np.float32)
    return torch.from_numpy(x if x.flags.writeable else x.copy())  # torch wants writable memory
