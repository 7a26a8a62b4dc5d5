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


class InProcessServer:
    """uvicorn serving an ASGI app on 127.0.0.1 from a thread of this process: real HTTP over a socket,
    while the test keeps the application object to set up and inspect."""

    def __init__(self, asgi_app, port: int | None = None) -> None:
        import threading

        import uvicorn

        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(asgi_app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> InProcessServer:
        self._thread.start()
        deadline = time.time() + 30
        while not self._server.started:
            assert time.time() < deadline, "in-process server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
