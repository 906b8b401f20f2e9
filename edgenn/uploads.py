"""What clients send, read with limits: pictures refused by pixel count before they are decoded.

A 165 KB PNG can hold 12000x12000 pixels and cost 2 GB to decode; Pillow reads the size from the
header, so the limit costs nothing. Used by edgenn serve and edgenn score (Pillow only, no Ray).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from edgenn.errors import EdgennError, InputError, first_line

DEFAULT_MAX_PIXELS = 4096 * 4096


class PictureTooLarge(InputError):
    """A picture whose header promises more pixels than the limit."""


def open_picture(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "the body") -> Any:
    """A decoded Pillow image of `data`; InputError naming what is wrong, PictureTooLarge over `max_pixels`."""
    if not data:
        raise InputError(f"{name} is empty: send a picture (PNG, JPEG, ...)")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise EdgennError("reading pictures needs Pillow: pip install pillow") from None
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns past 89 million pixels and raises past twice that: ours is the limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:
        raise PictureTooLarge(f"{name} is too large a picture ({first_line(exc, 200)})") from None
    except UnidentifiedImageError:
        raise InputError(f"{name} is not a picture edgenn can read (not a format Pillow knows)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{name} is not a picture edgenn can read ({first_line(exc, 200)})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PictureTooLarge(f"{name} is a {width}x{height} picture; at most {max_pixels} pixels are decoded")
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data after a good header
        raise InputError(f"{name} does not decode as a picture ({first_line(exc, 200)})") from None
    return image
