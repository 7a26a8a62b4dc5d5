"""Choose and build the right index for a collection size; save/load with a header that says what it holds."""

from __future__ import annotations

import os
import secrets
import struct
from pathlib import Path

import msgspec
import numpy as np

from loupe.indexes.base import VectorIndex
from loupe.indexes.faiss_index import POINTS_PER_LIST, FaissIndex, compressed_lists

_MAGIC = b"LOUPEIDX1"


class IndexHeader(msgspec.Struct, frozen=True):
    """Saved with the index so the owner can tell whether it still matches the source of truth."""

    kind: str
    dim: int
    count: int
    checksum: str
    tag: str = ""  # free for the owner: e.g. the backbone id the vectors came from


def index_kind(count: int, approx_threshold: int, compressed_threshold: int) -> str:
    """Exact search up to `approx_threshold` vectors, IVF-Flat up to `compressed_threshold` (4*dim bytes a
    vector in RAM), IVF-PQ beyond (~dim/10 bytes a vector; its owner re-ranks candidates exactly)."""
    if count > compressed_threshold:
        return "ivfpq"
    return "ivf" if count > approx_threshold else "exact"


def training_size(kind: str, count: int) -> int:
    """How many of `count` vectors (a random sample) an index of this kind trains on."""
    if kind == "exact":
        return 0
    if kind == "ivf":
        return min(count, 100_000)
    return min(count, POINTS_PER_LIST * compressed_lists(count, count))


def empty_index(kind: str, dim: int, training: np.ndarray, expected: int) -> FaissIndex:
    """A trained, empty index for about `expected` vectors."""
    if kind == "ivfpq":
        return FaissIndex.compressed(dim, training, expected)
    if kind == "ivf":
        return FaissIndex.ivf(dim, training, expected=expected)
    return FaissIndex.exact(dim)


def build_index(dim: int, ids: np.ndarray, vectors: np.ndarray, approx_threshold: int,
                compressed_threshold: int = 1 << 62) -> VectorIndex:
    """All vectors at hand (small collections, tests): the kind for their count, trained on a sample."""
    kind = index_kind(len(ids), approx_threshold, compressed_threshold)
    sample = np.random.default_rng(0).permutation(len(ids))[:training_size(kind, len(ids))]
    index = empty_index(kind, dim, vectors[np.sort(sample)], len(ids))
    index.add(ids, vectors)
    return index


def save_index(path: Path, index: VectorIndex, header: IndexHeader) -> None:
    """Header and index in one file, replaced atomically: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = msgspec.json.encode(header)
    # Own temporary name: server workers sharing the data dir may save the same index at once.
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + struct.pack(">I", len(head)) + head)
            f.write(index.to_bytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # disk full: leave no half-written file taking the last space
        raise


def load_index(path: Path) -> tuple[IndexHeader, VectorIndex] | None:
    """The saved header and index, or None when the file is missing or unreadable."""
    try:
        data = path.read_bytes()
        if not data.startswith(_MAGIC):
            return None
        offset = len(_MAGIC)
        (head_len,) = struct.unpack(">I", data[offset:offset + 4])
        header = msgspec.json.decode(data[offset + 4:offset + 4 + head_len], type=IndexHeader)
        index = FaissIndex.from_bytes(data[offset + 4 + head_len:], header.kind)
    except (OSError, ValueError, RuntimeError, struct.error, msgspec.DecodeError):
        return None
    if index.count() != header.count or index.dim != header.dim:
        return None
    return header, index
