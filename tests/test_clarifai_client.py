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


def _video(path: Path, photos: list[Path], seconds_each: float = 2.0, fps: int = 10) -> Path:
    """An MP4 made here with PyAV: each photo held for `seconds_each` seconds."""
    import av
    from PIL import Image

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for photo in photos:
            frame = av.VideoFrame.from_image(Image.open(photo).convert("RGB").resize((320, 240)))
            for _ in range(int(seconds_each * fps)):
                out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture
def allow_local_server(tmp_path):
    from real_server import Server, new_app

    key = new_app(tmp_path / "surface-data", "surface")
    running = Server(tmp_path / "surface-data", args=("--url-allow-hosts", "127.0.0.1")).start()
    yield running.base, key
    running.stop()


def test_official_client_surface(client_python, allow_local_server, tmp_path):
    """Geo, video, workflows, clauses by id and URL, crop, regions, model names, embeddings, paging,
    hyper_params, ties, and the shapes the Java and iOS clients need, through the official client."""
    base, key = allow_local_server
    shoes = dataset_images(CLOTHING / "train" / "shoes", 8)
    hats = dataset_images(CLOTHING / "train" / "hat", 8)
    video = _video(tmp_path / "clip.mp4", [hats[3], shoes[3]])
    script = Path(__file__).with_name("clarifai_surface.py")
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    result = subprocess.run([str(client_python), str(script), base, key, str(video), *map(str, shoes), "--",
                             *map(str, hats)], capture_output=True, text=True, timeout=600, env=env)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SURFACE PASSED" in result.stdout


JS_CLIENT = "clarifai@2.9.1"
JS_DIR = Path(tempfile.gettempdir()) / "loupe-test-clarifai-js-2.9.1"


@pytest.fixture(scope="session")
def js_client() -> Path:
    """Clarifai's npm client, installed once into a folder of its own (node_modules beside the script's path)."""
    marker = JS_DIR / "installed.txt"
    if not marker.exists() or marker.read_text() != JS_CLIENT:
        JS_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(JS_DIR), JS_CLIENT],
                       check=True, timeout=900)
        marker.write_text(JS_CLIENT)
    return JS_DIR / "node_modules"


def test_official_js_client_surface(js_client, live_server, tmp_path):
    base, key = live_server
    shoes = dataset_images(CLOTHING / "train" / "shoes", 4)
    hats = dataset_images(CLOTHING / "train" / "hat", 4)
    video = _video(tmp_path / "clip.mp4", [hats[1], shoes[1]])
    script = Path(__file__).with_name("clarifai_js_surface.js")
    result = subprocess.run(["node", str(script), base, key, str(video), str(shoes[0]), str(hats[0])],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "NODE_PATH": str(js_client)})
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "JS SURFACE PASSED" in result.stdout
