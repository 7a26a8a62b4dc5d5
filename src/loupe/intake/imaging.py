"""Image intake: bytes -> RGB PIL image under explicit limits, or a typed error saying why not."""

from __future__ import annotations

import hashlib
import io
import warnings

import msgspec
import numpy as np
from PIL import Image, ImageOps

from loupe.config import ImageLimits
from loupe.errors import (
    CorruptImage,
    ImageTooLarge,
    InvalidArgument,
    NotAnImage,
    UnsupportedFormat,
)


class DecodedImage(msgspec.Struct, frozen=True):
    image: Image.Image | None  # None once embedded, so a batch does not keep its pixels
    sha256: str
    format: str
    width: int
    height: int


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _megapixels(n: int) -> str:
    return f"{n / 1_000_000:.0f} MP" if n >= 1_000_000 else f"{n / 1_000_000:.2f} MP"


def decode_image(data: bytes, limits: ImageLimits, draft: int | None = None, sha256: str | None = None) -> DecodedImage:
    """Decode, validate and normalise one image. Never loads pixels before the size checks pass.

    `draft`: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as both sides stay >= draft
    pixels (libjpeg scales in the DCT: a 12 MP photo decodes ~10x faster). width/height stay the
    original's. `sha256`: the content hash, when the caller already has it."""
    if not data:
        raise NotAnImage("not an image: the file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"image is {len(data) / 1e6:.1f} MB, limit is {limits.max_bytes / 1e6:.0f} MB"
        )
    # Our own pixel limit is checked before load(); Pillow's global bomb check must not
    # pre-empt it with a different message (or a warning) for sizes between the two.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on damaged metadata: not the user's log
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise ImageTooLarge(
                f"image has too many pixels, limit is {_megapixels(limits.max_pixels)}"
            ) from None
        except Exception:  # noqa: BLE001 - on malformed files Pillow raises TypeError, KeyError, ... too
            raise NotAnImage("not an image: the bytes are not in any known image format") from None
        fmt = (img.format or "").upper()
        if fmt not in limits.formats:
            raise UnsupportedFormat(
                f"image format {fmt or 'unknown'} is not accepted; use one of {', '.join(limits.formats)}"
            )
        width, height = img.size
        if width <= 0 or height <= 0:
            raise CorruptImage("image has no pixels")
        if width * height > limits.max_pixels:
            raise ImageTooLarge(
                f"image is {_megapixels(width * height)} ({width}x{height}), "
                f"limit is {_megapixels(limits.max_pixels)}"
            )
        try:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP/TIFF: the first frame stands for the image
            if draft is not None and fmt == "JPEG" and min(width, height) >= 2 * draft:
                img.draft("RGB", (draft, draft))
            img.load()
            loaded = img.size  # smaller than (width, height) after a draft
            rgb = to_rgb(ImageOps.exif_transpose(img) or img)
        except Exception as exc:  # noqa: BLE001 - same: any failure inside Pillow means a damaged file
            raise CorruptImage(f"image data is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    # Record the original's upright size: EXIF may have turned the image a quarter.
    upright = (width, height) if rgb.size == loaded else (height, width)
    return DecodedImage(rgb, sha256 or content_hash(data), fmt, *upright)


_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is flattened onto white."""
    if img.mode == "RGB":
        return img
    if img.mode in _HIGH_DEPTH_MODES:
        # Pillow's convert("RGB") clips 16/32-bit values at 255; stretch the real range instead.
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def crop_fraction(data: bytes, crop: list[float], limits: ImageLimits) -> bytes:
    """Clarifai's crop [top, left, bottom, right] as fractions of the height/width: the cropped image,
    re-encoded losslessly (PNG), so it is stored, embedded and hashed as the image the user meant."""
    if len(crop) != 4 or not all(0.0 <= v <= 1.0 for v in crop):
        raise InvalidArgument("crop must be four fractions [top, left, bottom, right] between 0 and 1")
    top, left, bottom, right = crop
    if bottom <= top or right <= left:
        raise InvalidArgument("crop must have bottom > top and right > left")
    image = decode_image(data, limits).image
    assert image is not None  # freshly decoded
    w, h = image.size
    box = (int(left * w), int(top * h),
           max(int(left * w) + 1, round(right * w)), max(int(top * h) + 1, round(bottom * h)))
    out = io.BytesIO()
    image.crop(box).save(out, "PNG")
    return out.getvalue()
