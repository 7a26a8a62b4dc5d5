"""One trainer per model across processes: a lease record in LMDB.

`loupe serve --workers N` runs N processes over one data dir, and a train request may reach any of
them. Each train takes the model's lease in a write transaction (LMDB serialises those across
processes); while another live process holds it, the train is put back in its queue (the queue thread
meanwhile runs other apps' jobs, loupe.models.training_queue). A lease whose holder died (kill -9,
crash) is taken over, and the version it was training is marked failed instead of staying "training".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from loupe.models.jobs import process_alive, this_process
from loupe.store import Store
from loupe.store.records import Owner, TrainLease


class TrainLeases:
    def __init__(self, store: Store, owner: Owner | None = None, poll_seconds: float = 0.05) -> None:
        self._store = store
        self._owner = owner or this_process()
        self._poll = poll_seconds

    def _alive(self, lease: TrainLease) -> bool:
        # Ours means left from a train this process no longer runs: trains of one model in one process
        # are serialised before they reach the lease.
        return process_alive(Owner(host=lease.host, pid=lease.pid, token=lease.token), lease.acquired_at,
                             self._owner)

    def take(self, app_id: str, model_id: str, version_id: str) -> tuple[bool, TrainLease | None]:
        """Take the model's lease if no live process holds it: (taken, the dead holder's lease it replaced)."""
        with self._store.write() as tx:
            current = tx.get_train_lease(app_id, model_id)
            if current is not None and self._alive(current):
                return False, None
            tx.put_train_lease(app_id, model_id, TrainLease(
                version_id=version_id, host=self._owner.host, pid=self._owner.pid, token=self._owner.token,
                acquired_at=time.time()))
        return True, current

    def give_back(self, app_id: str, model_id: str, version_id: str) -> None:
        with self._store.write() as tx:
            current = tx.get_train_lease(app_id, model_id)
            if current is not None and current.token == self._owner.token and current.version_id == version_id:
                tx.delete_train_lease(app_id, model_id)

    @contextlib.contextmanager
    def hold(self, app_id: str, model_id: str, version_id: str,
             on_taken_over: Callable[[TrainLease], None]) -> Iterator[None]:
        """Wait (polling) for the model's lease, hold it for the block. `on_taken_over(lease)` is called
        with the lease of a dead holder that this one replaced."""
        while True:
            taken, replaced = self.take(app_id, model_id, version_id)
            if taken:
                break
            time.sleep(self._poll)
        if replaced is not None:
            on_taken_over(replaced)
        try:
            yield
        finally:
            self.give_back(app_id, model_id, version_id)
