"""The queue that trains and evaluations wait in: fair across apps, bounded per app and in total.

One app cannot starve another: apps take turns (round robin), so app B's train waits for at most one
job of each other app with work queued, however many app A sent. Each app may have at most
`per_app` jobs waiting or running and the queue at most `total`; beyond either, `submit` raises `Busy`
(HTTP 429 with Retry-After) instead of queueing without end. Waiting is on a Future, which async
request handlers await without holding a thread. A job that cannot run yet (its model is being trained
by another process) raises `Deferred`: it goes back to its app's queue and the thread takes other work.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from loupe.errors import Busy

log = logging.getLogger(__name__)


class Deferred(Exception):  # noqa: N818 - not an error: "run me again in a while"
    """Raised by a job that cannot run yet; it is run again after `seconds`, its place in the app's
    count kept."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"deferred for {seconds} s")
        self.seconds = seconds


class _Job:
    __slots__ = ("app_id", "fn", "future", "ready_at", "started")

    def __init__(self, app_id: str, fn: Callable[[], Any]) -> None:
        self.app_id, self.fn = app_id, fn
        self.future: Future[Any] = Future()
        self.ready_at = 0.0  # time.monotonic() before which a deferred job is not run again
        self.started = False


class FairQueue:
    def __init__(self, workers: int, per_app: int, total: int) -> None:
        self._per_app, self._total = per_app, total
        self._jobs: dict[str, deque[_Job]] = {}  # waiting, per app
        self._turns: deque[str] = deque()  # apps with waiting jobs, in the order they get a turn
        self._active: dict[str, int] = {}  # waiting + running, per app
        self._cond = threading.Condition()
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name=f"loupe-train-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, app_id: str, fn: Callable[[], Any]) -> Future:
        with self._cond:
            if self._stopped:
                raise RuntimeError("the training queue is shut down")
            if self._active.get(app_id, 0) >= self._per_app:
                raise Busy(f"this app already has {self._per_app} trains or evaluations queued or running; "
                           "wait for them to finish", retry_after=5)
            if sum(self._active.values()) >= self._total:
                raise Busy(f"the training queue is full ({self._total} jobs); retry shortly", retry_after=10)
            job = _Job(app_id, fn)
            if app_id not in self._jobs:
                self._jobs[app_id] = deque()
                self._turns.append(app_id)
            self._jobs[app_id].append(job)
            self._active[app_id] = self._active.get(app_id, 0) + 1
            self._cond.notify()
            return job.future

    def pending(self, app_id: str | None = None) -> int:
        """Jobs waiting or running: of one app, or of all."""
        with self._cond:
            return self._active.get(app_id, 0) if app_id is not None else sum(self._active.values())

    @property
    def saturated(self) -> bool:
        return self.pending() >= self._total

    def shutdown(self) -> None:
        """Cancel what waits, let running jobs finish."""
        with self._cond:
            self._stopped = True
            for jobs in self._jobs.values():
                for job in jobs:
                    if job.started:  # a deferred job: its future runs already and cannot be cancelled
                        job.future.set_exception(RuntimeError("the training queue was shut down"))
                    else:
                        job.future.cancel()
            self._jobs.clear()
            self._turns.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=60)

    def _next(self) -> _Job | None:
        with self._cond:
            while True:
                if self._stopped:
                    return None
                now, soonest = time.monotonic(), math.inf
                for _ in range(len(self._turns)):
                    app_id = self._turns.popleft()
                    jobs = self._jobs[app_id]
                    job = next((j for j in jobs if j.ready_at <= now), None)
                    if job is None:  # only deferred jobs: the app keeps its turn for later
                        self._turns.append(app_id)
                        soonest = min(soonest, *(j.ready_at for j in jobs))
                        continue
                    jobs.remove(job)
                    if jobs:
                        self._turns.append(app_id)  # its next job waits for every other app's turn
                    else:
                        del self._jobs[app_id]
                    return job
                self._cond.wait(None if soonest == math.inf else soonest - now)

    def _defer(self, job: _Job, seconds: float) -> None:
        with self._cond:
            if self._stopped:
                job.future.set_exception(RuntimeError("the training queue was shut down"))
                self._finished(job)
                return
            job.ready_at = time.monotonic() + seconds
            if job.app_id not in self._jobs:
                self._jobs[job.app_id] = deque()
                self._turns.append(job.app_id)
            self._jobs[job.app_id].append(job)
            self._cond.notify()

    def _finished(self, job: _Job) -> None:
        """Called with the condition held."""
        left = self._active.get(job.app_id, 1) - 1
        if left:
            self._active[job.app_id] = left
        else:
            self._active.pop(job.app_id, None)

    def _work(self) -> None:
        while (job := self._next()) is not None:
            if not job.started:
                if not job.future.set_running_or_notify_cancel():
                    with self._cond:
                        self._finished(job)
                    continue
                job.started = True
            try:
                result = job.fn()
            except Deferred as later:
                self._defer(job, later.seconds)
                continue
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            with self._cond:
                self._finished(job)
