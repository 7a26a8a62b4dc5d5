"""Resize/crop/normalise shared by the backbones."""

from __future__ import annotations

import msgspec
import numpy as np
from PIL import Image


class Preprocessing(msgspec.Struct, frozen=True):
    size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = Image.Resampling.BICUBIC


def center_crop_resize(image: Image.Image, p: Preprocessing) -> np.ndarray:
    """Centre square of side crop_pct * shorter side, resized to size x size, normalised CHW float32.

    Equivalent to the usual "resize shorter side to size/crop_pct, centre-crop size", but it
    crops first, so an extreme aspect ratio (1 x 100000) never blows up to a huge intermediate.
    """
    w, h = image.size
    side = max(1.0, min(w, h) * p.crop_pct)
    left, top = (w - side) / 2, (h - side) / 2
    resized = image.resize((p.size, p.size), p.resample, box=(left, top, left + side, top + side))
    arr = np.asarray(resized, dtype=np.float32) * np.float32(1.0 / 255.0)
    normalised = (arr - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)
