"""What clients send, read with limits: pictures refused by pixel count before they are decoded
(the runtime's own reader, `edgenn.runtime.image.open_image`), an empty body named as such. Used by
edgenn serve and edgenn score (Pillow only, no Ray)."""

from __future__ import annotations

from typing import Any

from edgenn.errors import InputError
from edgenn.runtime.image import DEFAULT_MAX_PIXELS, PictureTooLarge, open_image

__all__ = ["DEFAULT_MAX_PIXELS", "PictureTooLarge", "open_picture"]


def open_picture(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "the body") -> Any:
    """A decoded Pillow image of `data`; InputError naming what is wrong, PictureTooLarge over `max_pixels`."""
    if not data:
        raise InputError(f"{name} is empty: send a picture (PNG, JPEG, ...)")
    return open_image(data, name, max_pixels)
