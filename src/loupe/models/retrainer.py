"""Debounced background retraining after label edits: many quick edits, one retrain, no request waits."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Retrainer:
    """`touch(app_id, model_id)` (re)starts a model's quiet period; when it ends, `train` runs once."""

    def __init__(self, delay: float, train: Callable[[str, str], None]) -> None:
        self._delay = delay
        self._train = train
        self._due: dict[tuple[str, str], float] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="loupe-retrainer", daemon=True)
        self._thread.start()

    def touch(self, app_id: str, model_id: str) -> None:
        with self._cond:
            self._due[(app_id, model_id)] = time.monotonic() + self._delay
            self._cond.notify()

    def pending(self) -> list[tuple[str, str]]:
        with self._cond:
            return list(self._due)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    ready = [k for k, t in self._due.items() if t <= now]
                    if ready:
                        key = ready[0]
                        del self._due[key]
                        break
                    wait = min(self._due.values()) - now if self._due else None
                    self._cond.wait(timeout=wait)
                if self._stopped:
                    return
            try:
                self._train(*key)
            except Exception:  # noqa: BLE001 - the version records the failure; keep serving
                log.exception("background retrain of %s/%s failed", *key)
