"""Key layout. Parts are joined by NUL, which ids may not contain, so prefixes never overlap."""

from __future__ import annotations

import struct

SEP = b"\x00"


def join(*parts: str | bytes) -> bytes:
    return SEP.join(p if isinstance(p, bytes) else p.encode("utf-8") for p in parts)


def prefix(*parts: str | bytes) -> bytes:
    return join(*parts) + SEP


def seq_bytes(seq: int) -> bytes:
    # Big-endian so that byte order is numeric order and cursors walk inputs by age.
    return struct.pack(">Q", seq)


def seq_from(key: bytes) -> int:
    return struct.unpack(">Q", key[-8:])[0]


def last_part(key: bytes) -> str:
    return key.rsplit(SEP, 1)[1].decode("utf-8")


POSITIVE = b"+"
NEGATIVE = b"-"
