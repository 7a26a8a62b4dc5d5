"""Compiled models kept in the data dir, keyed by what they were built from; never trusted blindly.

Key: backbone id + weights identity + runtime version + IR kind. Each entry is a folder with the IR
(model.xml / model.bin) and a manifest holding the key and the files' sha256. An entry that is
missing a file, does not match its manifest, or fails to load is deleted and rebuilt from the
weights; a new weights file or runtime version gives a new key, so a stale entry is never used (and
is removed)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import msgspec

from loupe.backbones.specs import file_sha256

log = logging.getLogger(__name__)

FILES = ("model.xml", "model.bin")


class CacheKey(msgspec.Struct, frozen=True):
    backbone_id: str
    weights: str
    runtime: str  # e.g. "openvino-2026.4.1-..."
    ir: str  # "fp32" (bf16 is a compile-time choice over the same IR)
    tower: str = "image"  # "image" or "text"

    @property
    def folder_name(self) -> str:
        digest = hashlib.sha256(msgspec.json.encode(self)).hexdigest()[:16]
        return f"{self.backbone_id}-{self.tower}-{digest}"


class Manifest(msgspec.Struct):
    key: CacheKey
    sha256: dict[str, str]


class CompiledCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.rebuilds = 0  # entries built (tests read it)

    def folder(self, key: CacheKey) -> Path:
        return self.root / key.folder_name

    def get_or_build(self, key: CacheKey, build: Callable[[Path], None]) -> Path:
        """The verified model.xml for `key`; `build(folder)` writes model.xml/.bin when there is none."""
        found = self.verified(key)
        if found is not None:
            return found
        return self._build(key, build)

    def verified(self, key: CacheKey) -> Path | None:
        folder = self.folder(key)
        try:
            manifest = msgspec.json.decode((folder / "manifest.json").read_bytes(), type=Manifest)
            ok = (manifest.key == key and set(FILES) <= set(manifest.sha256)
                  and all(file_sha256(folder / name) == digest for name, digest in manifest.sha256.items()))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            ok = False
        if ok:
            return folder / "model.xml"
        if folder.exists():
            log.warning("compiled model %s is damaged or stale: rebuilding it", folder)
            self.discard(key)
        return None

    def discard(self, key: CacheKey) -> None:
        shutil.rmtree(self.folder(key), ignore_errors=True)

    def _build(self, key: CacheKey, build: Callable[[Path], None]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        # Entries of the same backbone and tower under another key (old weights, old runtime) go.
        for old in self.root.glob(f"{key.backbone_id}-{key.tower}-*"):
            if old.name != key.folder_name and not old.name.endswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True)
        tmp = self.root / f"{key.folder_name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            written = sorted(p.name for p in tmp.iterdir())  # model.xml/.bin and any extras of the build
            manifest = Manifest(key=key, sha256={name: file_sha256(tmp / name) for name in written})
            (tmp / "manifest.json").write_bytes(msgspec.json.encode(manifest))
            for name in (*written, "manifest.json"):
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
            final = self.folder(key)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)  # another process may have built it meanwhile: the newest wins
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.rebuilds += 1
        return self.folder(key) / "model.xml"


