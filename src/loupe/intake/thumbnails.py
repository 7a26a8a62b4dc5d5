"""Thumbnails for the web page: made once per image content, kept in LMDB next to the original."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image

from loupe.errors import StorageFull
from loupe.intake.imaging import to_rgb
from loupe.store import Store

SIZE = 160


def thumbnail_of(image: Image.Image) -> bytes:
    """JPEG bytes of a decoded RGB image, at most SIZE pixels a side."""
    small = image.copy()
    small.thumbnail((SIZE, SIZE))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return out.getvalue()


def thumbnail(store: Store, sha256: str, original: Callable[[], bytes]) -> bytes:
    """The stored thumbnail of a content, or one made from `original()` (read only then) and kept."""
    with store.read() as tx:
        cached = tx.get_thumbnail(sha256)
    if cached is not None:
        return cached
    img = Image.open(io.BytesIO(original()))
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    img.draft("RGB", (SIZE * 2, SIZE * 2))  # JPEG: decode at a fraction of full size
    data = thumbnail_of(to_rgb(img))
    try:
        with store.write() as tx:
            tx.put_thumbnail(sha256, data)
    except StorageFull:
        pass  # a cache: served without keeping it while the disk is full
    return data
