"""One trainer per model across processes: a lease record in LMDB.

`loupe serve --workers N` runs N processes over one data dir, and a train request may reach any of
them. Each train takes the model's lease in a write transaction (LMDB serialises those across
processes) and waits while another live process holds it. A lease whose holder died (kill -9, crash)
is taken over, and the version it was training is marked failed instead of staying "training".
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator

from loupe.store import Store
from loupe.store.records import TrainLease

# A lease from another machine cannot be checked for a live holder; past this age it is taken over
# (an LMDB data dir is one machine's, so this only matters for a copied data dir).
MAX_LEASE_SECONDS = 6 * 3600.0


def holder_alive(lease: TrainLease, token: str, host: str) -> bool:
    if lease.token == token:
        return False  # ours, left from a train this process no longer runs
    if time.time() - lease.acquired_at > MAX_LEASE_SECONDS:
        return False
    if lease.host != host:
        return True
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class TrainLeases:
    def __init__(self, store: Store, poll_seconds: float = 0.05) -> None:
        self._store = store
        self._token = secrets.token_hex(8)
        self._host = socket.gethostname()
        self._poll = poll_seconds

    @contextlib.contextmanager
    def hold(self, app_id: str, model_id: str, version_id: str,
             on_taken_over: Callable[[TrainLease], None]) -> Iterator[None]:
        """Wait for the model's lease, hold it for the block. `on_taken_over(lease)` is called with the
        lease of a dead holder that this one replaced."""
        mine = TrainLease(version_id=version_id, host=self._host, pid=os.getpid(), token=self._token,
                          acquired_at=0.0)
        while True:
            with self._store.write() as tx:
                current = tx.get_train_lease(app_id, model_id)
                free = current is None or not holder_alive(current, self._token, self._host)
                if free:
                    mine.acquired_at = time.time()
                    tx.put_train_lease(app_id, model_id, mine)
            if free:
                break
            time.sleep(self._poll)
        if current is not None:
            on_taken_over(current)
        try:
            yield
        finally:
            with self._store.write() as tx:
                current = tx.get_train_lease(app_id, model_id)
                if current is not None and current.token == self._token and current.version_id == version_id:
                    tx.delete_train_lease(app_id, model_id)
