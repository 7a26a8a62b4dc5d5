"""Jobs across the processes sharing a data dir: each queued or running train, evaluation or quality job
has a record in LMDB naming the process that owns it.

`loupe serve --workers N` runs N processes, each with its own in-memory queue. The records make two
things hold across them: an app's cap on queued + running jobs counts every process's jobs (in one write
transaction, so two workers cannot both take the last slot), and when a process dies (kill -9, OOM) any
other one fails its jobs' versions and evaluations instead of leaving them "queued" or "training" — at
start and every `REAP_SECONDS` after.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from loupe.errors import Busy
from loupe.ids import new_id
from loupe.models.training_queue import Deferred, FairQueue
from loupe.store import Store, WriteTxn
from loupe.store.records import Job, JobKind, Owner

log = logging.getLogger(__name__)

# How often each process looks for jobs of dead processes: a killed worker's jobs are failed within
# about this long (plus one reap's duration, milliseconds).
REAP_SECONDS = 5.0
# A record from another host cannot be checked for a live owner; past this age it is taken as dead
# (an LMDB data dir is one machine's, so this only matters for a copied data dir).
MAX_FOREIGN_SECONDS = 6 * 3600.0


def this_process() -> Owner:
    return Owner(host=socket.gethostname(), pid=os.getpid(), token=secrets.token_hex(8))


def process_alive(owner: Owner, since: float, me: Owner) -> bool:
    """Whether another process (not `me`) that wrote a record at `since` still runs."""
    if owner.token == me.token:
        return False  # ours: the caller knows better (see JobBoard.alive)
    if owner.host != me.host:
        return time.time() - since <= MAX_FOREIGN_SECONDS
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


# What to do with a dead process's job, in the transaction that removes its record.
Orphaned = Callable[[WriteTxn, str, Job], None]


class JobBoard:
    def __init__(self, store: Store, queue: FairQueue, per_app: int) -> None:
        self._store = store
        self._queue = queue
        self._per_app = per_app
        self.owner = this_process()
        self._mine: set[str] = set()  # ids of this process's jobs that are queued or running
        self._lock = threading.Lock()
        self._handlers: dict[JobKind, Orphaned] = {}
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def on_orphaned(self, kind: JobKind, handler: Orphaned) -> None:
        self._handlers[kind] = handler

    def alive(self, job: Job) -> bool:
        if job.owner.token == self.owner.token:
            with self._lock:
                return job.id in self._mine
        return process_alive(job.owner, job.created_at, self.owner)

    def claim(self, tx: WriteTxn, app_id: str, kind: JobKind, model_id: str, version_id: str = "") -> Job:
        """A slot for a job of the app, in the caller's write transaction; Busy when the app's jobs in
        every process already fill its cap. The caller must `release` it (or `forget` it if the
        transaction is abandoned)."""
        live = sum(1 for _, job in tx.iter_jobs(app_id) if self.alive(job))
        if live >= self._per_app:
            raise Busy(f"this app already has {self._per_app} trains, evaluations or quality jobs queued or "
                       "running; wait for them to finish", retry_after=5)
        job = Job(id=new_id(), kind=kind, model_id=model_id, version_id=version_id, owner=self.owner,
                  created_at=time.time())
        tx.put_job(app_id, job)
        with self._lock:
            self._mine.add(job.id)
        return job

    def run(self, app_id: str, job: Job, fn: Callable[[], Any]) -> Future:
        """Queue `fn` under the job claimed for it; its record goes when it has run (or is refused)."""
        def run() -> Any:
            try:
                result = fn()
            except Deferred:
                raise
            except BaseException:
                self.release(app_id, job)
                raise
            self.release(app_id, job)
            return result

        try:
            return self._queue.submit(app_id, run)
        except BaseException:
            self.release(app_id, job)
            raise

    def forget(self, job: Job) -> None:
        with self._lock:
            self._mine.discard(job.id)

    def release(self, app_id: str, job: Job) -> None:
        with self._store.write() as tx:
            tx.delete_job(app_id, job.id)
        self.forget(job)  # after the record is gone: our own reaper must not see it as orphaned

    def count(self, app_id: str) -> int:
        """The app's live jobs, in every process."""
        with self._store.read() as tx:
            return sum(1 for _, job in tx.iter_jobs(app_id) if self.alive(job))

    def reap(self, which: Callable[[Job], bool] | None = None) -> int:
        """Fail the jobs of processes that died, remove their records; returns how many."""
        with self._store.read() as tx:
            dead = [(app_id, job) for app_id, job in tx.iter_jobs()
                    if (which is None or which(job)) and not self.alive(job)]
        if not dead:
            return 0
        with self._store.write() as tx:
            for app_id, job in dead:
                handler = self._handlers.get(job.kind)
                if handler is not None:
                    handler(tx, app_id, job)
                tx.delete_job(app_id, job.id)
        log.warning("failed %d job(s) of stopped processes", len(dead))
        return len(dead)

    def start_reaper(self, seconds: float | None = None) -> None:
        """Reap now, then every `seconds` (REAP_SECONDS), on a daemon thread, until `close`."""
        seconds = REAP_SECONDS if seconds is None else seconds

        def loop() -> None:
            while not self._store.closed:
                try:
                    self.reap()
                except Exception:  # noqa: BLE001 - a full disk, a store closed meanwhile: try again later
                    if self._store.closed:
                        return
                    log.exception("reaping jobs of stopped processes failed")
                if self._stop.wait(seconds):
                    return

        self._reaper = threading.Thread(target=loop, name="loupe-job-reaper", daemon=True)
        self._reaper.start()

    def close(self) -> None:
        """Stop reaping; this process's jobs still on record (queued when the queue shut down) are
        failed now, so they count against nobody's cap."""
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=10)
        with self._lock:
            self._mine.clear()  # from here on, our records read as orphaned
        self.reap(lambda job: job.owner.token == self.owner.token)
