"""Run a blocking handler (LMDB, torch, FAISS) on a worker thread from an async Litestar handler.

Litestar 2.25 mis-serves a path that has three or more `sync_to_thread=True` handlers (GET answers
with the un-awaited coroutine, a 500), so the handlers here are async and hop to a thread themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio.to_thread


def in_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handler(*args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    return handler
