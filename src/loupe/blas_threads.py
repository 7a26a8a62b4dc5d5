"""numpy's BLAS kept on the calling thread for loops that alternate numpy and torch work.

OpenBLAS leaves its worker threads spinning for a while after each call; on 2 cores they starve
torch's threads in the L-BFGS fit that follows. Measured here: a 533-row fold fit took 80-150 ms after
a numpy matmul and 40 ms without one, which was half of a 10k x 10 train. The numpy products inside
training and evaluation are small, so one thread costs them little.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def numpy_blas_on_caller_thread() -> threadpool_limits:
    """A context manager (process-wide while it is open: concurrent trains share the limit)."""
    return threadpool_limits(limits=1, user_api="blas")
