"""Images sent for prediction, kept a short while so an answer can name them by URL: Clarifai's 2017
clients read an output's input image only as a URL. Bounded in bytes and age; per app, so a key of one
app never reads another's."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

MAX_BYTES = 64 * 1024 * 1024
MAX_AGE_SECONDS = 3600.0


class RecentImages:
    def __init__(self, max_bytes: int = MAX_BYTES, max_age: float = MAX_AGE_SECONDS) -> None:
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._items: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def put(self, app_id: str, sha256: str, data: bytes) -> None:
        if len(data) > self._max_bytes:
            return
        with self._lock:
            old = self._items.pop((app_id, sha256), None)
            if old is not None:
                self._size -= len(old[1])
            self._items[(app_id, sha256)] = (time.monotonic(), data)
            self._size += len(data)
            self._trim()

    def get(self, app_id: str, sha256: str) -> bytes | None:
        with self._lock:
            self._trim()
            found = self._items.get((app_id, sha256))
            return None if found is None else found[1]

    def _trim(self) -> None:
        cutoff = time.monotonic() - self._max_age
        while self._items:
            key, (at, data) = next(iter(self._items.items()))
            if self._size <= self._max_bytes and at >= cutoff:
                break
            del self._items[key]
            self._size -= len(data)
