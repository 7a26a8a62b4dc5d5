"""Image intake: limits, each typed error, and the odd-but-valid images users send."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CLOTHING, dataset_images, image_bytes
from PIL import Image

from loupe.config import ImageLimits
from loupe.errors import CorruptImage, ImageTooLarge, NotAnImage, UnsupportedFormat
from loupe.intake.imaging import decode_image

LIMITS = ImageLimits()


def test_real_jpeg_decodes_to_rgb_with_hash():
    data = dataset_images(CLOTHING / "train" / "dress", 1)[0].read_bytes()
    decoded = decode_image(data, LIMITS)
    assert decoded.image.mode == "RGB"
    assert decoded.format == "JPEG"
    assert max(decoded.width, decoded.height) <= 256
    assert len(decoded.sha256) == 64


def test_empty_file():
    with pytest.raises(NotAnImage, match="empty"):
        decode_image(b"", LIMITS)


def test_text_is_not_an_image():
    with pytest.raises(NotAnImage, match="not an image"):
        decode_image(b"hello, I am a text file pretending to be a .jpg", LIMITS)


def test_format_outside_allow_list():
    with pytest.raises(UnsupportedFormat, match="ICO is not accepted"):
        decode_image(image_bytes(Image.new("RGB", (16, 16)), "ICO"), LIMITS)


def test_byte_limit():
    data = dataset_images(CLOTHING / "train" / "dress", 1)[0].read_bytes()
    with pytest.raises(ImageTooLarge, match="limit is"):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))


def test_decompression_bomb_refused_before_decoding():
    # 9000x9000 of one colour: a few hundred kB of PNG that would expand to 243 MB of pixels.
    bomb = image_bytes(Image.new("RGB", (9000, 9000)), "PNG")
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageTooLarge, match=r"image is 81 MP \(9000x9000\), limit is 40 MP"):
        decode_image(bomb, LIMITS)


def test_truncated_jpeg_is_corrupt():
    data = dataset_images(CLOTHING / "train" / "dress", 1)[0].read_bytes()
    with pytest.raises(CorruptImage, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2], LIMITS)


def test_odd_modes_become_rgb():
    sixteen = Image.fromarray(np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100)
    cases = {
        "cmyk": image_bytes(Image.new("CMYK", (10, 12), (0, 255, 0, 0)), "JPEG"),
        "16-bit": image_bytes(sixteen, "PNG"),
        "palette": image_bytes(Image.new("P", (10, 12)), "GIF"),
        "rgba": image_bytes(Image.new("RGBA", (10, 12), (255, 0, 0, 0)), "PNG"),
        "tiff-float": image_bytes(Image.new("F", (10, 12)), "TIFF"),
        "bmp": image_bytes(Image.new("L", (10, 12)), "BMP"),
        "webp": image_bytes(Image.new("RGB", (10, 12)), "WEBP"),
    }
    for name, data in cases.items():
        decoded = decode_image(data, LIMITS)
        assert decoded.image.mode == "RGB", name
    # 16-bit range is stretched, not clipped to white.
    arr = np.asarray(decode_image(cases["16-bit"], LIMITS).image)
    assert arr.min() == 0 and arr.max() == 255
    # Transparent pixels are flattened onto white.
    assert decode_image(cases["rgba"], LIMITS).image.getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buf, LIMITS)
    r, g, b = decoded.image.getpixel((0, 0))
    assert r > 200 and b < 50


def test_exif_orientation_applied():
    img = Image.new("RGB", (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = decode_image(image_bytes(img, "JPEG", exif=exif.tobytes()), LIMITS)
    assert (decoded.width, decoded.height) == (20, 40)


def test_extreme_aspect_ratio_is_accepted():
    decoded = decode_image(image_bytes(Image.new("RGB", (1, 100_000)), "PNG"), LIMITS)
    assert decoded.image.size == (1, 100_000)
