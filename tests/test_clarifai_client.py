"""Clarifai's official Python client (clarifai==2.6.2, unmodified) runs its custom-training quick start
against a real `loupe serve` on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import CLOTHING, dataset_images

pytestmark = pytest.mark.slow

CLIENT_PACKAGES = ["clarifai==2.6.2", "protobuf==3.19.6", "googleapis-common-protos==1.56.4"]
VENV = Path(tempfile.gettempdir()) / "loupe-test-clarifai-2.6.2"


@pytest.fixture(scope="session")
def client_python() -> Path:
    """A virtual environment with the official client (it needs protobuf 3, which Loupe does not)."""
    python = VENV / "bin" / "python"
    marker = VENV / "installed.txt"
    if not marker.exists() or marker.read_text() != " ".join(CLIENT_PACKAGES):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *CLIENT_PACKAGES], check=True, timeout=900)
        marker.write_text(" ".join(CLIENT_PACKAGES))
    return python


def test_official_client_quickstart(client_python, live_server):
    base, key = live_server
    shoes = [str(p) for p in dataset_images(CLOTHING / "train" / "shoes", 5)]
    hats = [str(p) for p in dataset_images(CLOTHING / "train" / "hat", 5)]
    query = str(dataset_images(CLOTHING / "test" / "hat", 1)[0])
    script = Path(__file__).with_name("clarifai_quickstart.py")
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    result = subprocess.run([str(client_python), str(script), base, key, *shoes, "--", *hats, "--", query],
                            capture_output=True, text=True, timeout=600, env=env)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "QUICKSTART PASSED" in result.stdout
