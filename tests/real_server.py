"""A real `loupe serve` process on 127.0.0.1 for the tests that need one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from loupe.application import Loupe
from loupe.config import Config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_app(data: Path, app_id: str) -> str:
    """Create an app in `data` (before the server starts) and return an all-scope key for it."""
    with Loupe(Config(data_dir=data)) as loupe:
        loupe.apps.create(app_id)
        return loupe.keys.create(app_id)


class Server:
    def __init__(self, data: Path, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.data, self.port, self.args = data, port or free_port(), args
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.proc = subprocess.Popen([sys.executable, "-m", "loupe.cli", "serve", "--port", str(self.port), *self.args],
                                     env={**os.environ, "LOUPE_DATA_DIR": str(self.data)},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1).read()
                return self
            except OSError:
                assert self.proc.poll() is None, "server exited during start-up"
                assert time.time() < deadline, "server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
