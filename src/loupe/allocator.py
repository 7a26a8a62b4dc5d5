"""Process-wide allocator setting for the long-running commands (`loupe serve`, `loupe import`).

glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after which decoded
photos and activations come from the heap arenas and their pages are rarely given back: measured on
`benchmarks/soak_memory.py`, server RSS went 420 -> 1,130 MB over 50-request rounds of new photos.
A fixed 1 MiB threshold keeps every large buffer in its own mapping, returned to the system when
freed (same benchmark: 420 -> 630 MB, flat after the first round).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 1024 * 1024


def keep_large_buffers_returnable() -> bool:
    """Fix glibc's mmap threshold; False (and nothing changed) on another C library."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        log.info("mallopt not available: allocator left as it is")
        return False
