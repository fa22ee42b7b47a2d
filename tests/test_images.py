"""Every kind of image a user may hand us is converted to RGB, or refused with a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vidcap.errors import InputError, InputTooLargeError
from vidcap.images import load_image


def _encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (20, 10), 128),
        lambda: Image.new("RGBA", (20, 10), (255, 0, 0, 128)),
        lambda: Image.new("RGB", (20, 10), (1, 2, 3)).convert("P", palette=Image.Palette.ADAPTIVE),
        lambda: Image.fromarray((np.arange(200, dtype=np.uint16).reshape(10, 20) * 300)),
        lambda: Image.new("1", (20, 10), 1),
        lambda: Image.new("LA", (20, 10), (40, 255)),
    ],
    ids=["grayscale", "rgba", "palette", "16-bit", "1-bit", "gray+alpha"],
)
def test_image_modes_become_rgb_uint8(make):
    pixels = load_image(_encode(make()))
    assert pixels.shape == (10, 20, 3) and pixels.dtype == np.uint8


def test_sixteen_bit_range_is_scaled_not_clipped():
    ramp = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300)  # 0..59700
    pixels = load_image(_encode(Image.fromarray(ramp)))
    assert pixels.min() == 0 and pixels.max() == 255
    assert len(np.unique(pixels[..., 0])) > 100


def test_transparent_pixels_become_white():
    pixels = load_image(_encode(Image.new("RGBA", (4, 4), (255, 0, 0, 0))))
    assert (pixels == 255).all()


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    pixels = load_image(tmp_path / "c.jpg")
    assert pixels.shape == (8, 8, 3) and pixels[..., 0].mean() > 200


def test_bad_files_give_one_line_errors(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    truncated = _encode(Image.new("RGB", (64, 64), (5, 6, 7)), "JPEG")[:200]
    (tmp_path / "cut.jpg").write_bytes(truncated)
    for name, pattern in [("empty.jpg", "0 bytes"), ("text.jpg", "cannot read"), ("cut.jpg", "cannot read"),
                          ("missing.jpg", "not found")]:
        with pytest.raises(InputError, match=pattern) as info:
            load_image(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="0 bytes"):
        load_image(b"")


def test_huge_images_are_refused_before_decoding():
    data = _encode(Image.new("RGB", (300, 200)))
    with pytest.raises(InputTooLargeError, match="60000 pixels, above the limit of 50000"):
        load_image(data, max_pixels=50_000)
    assert load_image(data, max_pixels=60_000).shape == (200, 300, 3)


def test_pils_decompression_bomb_guard_stays_on_and_a_bomb_is_a_clean_error(tmp_path):
    """A PNG whose header claims 30000 x 30000 pixels (more than PIL's own limit) is refused as too large, not
    decoded, whatever limit the caller passed."""
    import struct
    import zlib

    from PIL import Image

    assert Image.MAX_IMAGE_PIXELS is not None  # vidcap.images (imported above) leaves PIL's guard on

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def png_claiming(width: int, height: int) -> bytes:
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
            chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")

    with pytest.raises(InputTooLargeError, match="cannot decode image bytes safely.*decompression bomb"):
        load_image(png_claiming(30000, 30000), max_pixels=10**12)
    with pytest.raises(InputTooLargeError, match="8000x8000 = 64000000 pixels, above the limit of 50000000"):
        load_image(png_claiming(8000, 8000))
