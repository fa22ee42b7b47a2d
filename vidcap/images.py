"""Reading images from files or bytes into RGB uint8 arrays, with clear errors for anything unusable."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vidcap.errors import InputError, InputTooLargeError
from vidcap.fileio import require_file

DEFAULT_MAX_PIXELS = 50_000_000  # refuse larger images before decoding them (memory), configurable

# PIL's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS) stays on for the whole process, as a last line
# behind the per-call limit below, which is checked from the header with a message naming the limit.


def load_image(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A path or encoded bytes -> (H, W, 3) uint8 RGB. Grayscale, RGBA, palette, CMYK and 16-bit images are
    converted; EXIF rotation is applied. Raises InputError with a one-line reason."""
    name = "image bytes" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        if not source:
            raise InputError("empty image (0 bytes)")
        stream = io.BytesIO(source)
    else:
        stream = require_file(source, "image").open("rb")
    try:
        with stream, Image.open(stream) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise InputTooLargeError(
                    f"image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}"
                )
            img.load()
            return _to_rgb(ImageOps.exif_transpose(img))
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"cannot decode {name} safely: {exc}") from None
    except UnidentifiedImageError:  # PIL's message names its stream object: say it in plain words
        raise InputError(f"cannot read {'the upload' if isinstance(source, bytes) else name} as an image: not a "
                         f"format vidcap reads (PNG, JPEG, WebP, GIF, BMP, TIFF ...)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot read {name} as an image: {exc}") from exc


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # High bit depth: scale the actual range to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as most viewers show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
