"""Pictures (files, bytes, arrays) -> grey scale in [0, 1] -> the model's input, as in training.

Pillow decodes the files and is imported only here, only when a picture is read, so apps that feed
arrays never need it.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.errors import EdgennError, InputError, first_line
from edgenn.preprocess import digits_to_input, picture_to_digit, pixels_to_input
from edgenn.specs import Preprocessing

# Pictures over this many pixels are refused from their header, before decoding: a 165 KB PNG can hold
# 12000x12000 pixels and cost 2 GB to decode. 16.8 million: a 4096x4096 picture, about 200 MB decoded.
DEFAULT_MAX_PIXELS = 4096 * 4096


class PictureTooLarge(InputError):
    """A picture whose header promises more pixels than the limit."""


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

# RGB -> luma weights (ITU-R 601-2), the same Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def read_picture(
    source: str | os.PathLike[str] | bytes | Any,
    name: str = "",
    color: str = "grey",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """A picture file, its bytes, a file object or a Pillow image -> float32 in [0, 1]: grey (H, W),
    or (H, W, 3) RGB when `color` is rgb or bgr (the channel order is the model's, applied later).
    PictureTooLarge, before decoding, for a picture of more than `max_pixels` pixels."""
    image = open_image(source, name or _describe(source), max_pixels)
    if color == "grey":
        return _pil_to_grey(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return _composite_on_white(np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0)
    if image.mode in ("I", "I;16", "I;16B", "F"):
        return np.repeat(_pil_to_grey(image)[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def array_to_grey(array: np.ndarray, name: str = "picture") -> np.ndarray:
    """A 2-D grey or 3-D (H, W, 3|4) colour array -> grey (H, W) float32 in [0, 1].

    Integer arrays are read as 8-bit pixels (0..255, or 16-bit where values exceed 255); float
    arrays must already be in [0, 1].
    """
    array = np.asarray(array)
    if array.ndim == 2:
        return _unit_range(array, name)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        colour = _unit_range(array, name)
        if colour.shape[-1] == 4:
            colour = _composite_on_white(colour)
        return colour @ _LUMA
    raise InputError(f"{name}: a picture must be 2-D grey (H, W) or (H, W, 3|4) colour, got shape {array.shape}")


def array_to_pixels(array: np.ndarray, color: str, name: str = "picture") -> np.ndarray:
    """A 2-D grey or (H, W, 3|4) array -> grey (H, W), or (H, W, 3) RGB for colour models, in [0, 1]."""
    array = np.asarray(array)
    if color == "grey" or array.ndim == 2:
        return array_to_grey(array, name)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        colour = _unit_range(array, name)
        return _composite_on_white(colour) if colour.shape[-1] == 4 else colour
    raise InputError(f"{name}: a picture must be 2-D grey (H, W) or (H, W, 3|4) colour, got shape {array.shape}")


def picture_to_input(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Pixels in [0, 1] (grey (H, W), or (H, W, 3) for colour models) -> a batch of one model input,
    converted as in training."""
    if not prep.is_digits:
        return pixels_to_input(pixels, prep)
    grey = pixels if np.ndim(pixels) == 2 else np.asarray(pixels, dtype=np.float32)[..., :3] @ _LUMA
    return digits_to_input(picture_to_digit(grey, prep)[None], prep)


def is_picture_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in PICTURE_SUFFIXES


def open_image(source: Any, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """A decoded Pillow image of a path, bytes or file object (a Pillow image as it is); InputError naming
    what is wrong, PictureTooLarge from the header alone where it has more than `max_pixels` pixels."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise EdgennError("reading pictures needs Pillow: pip install pillow (or pass a .npy array)") from None
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise InputError(f"picture not found: {name}")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns past 89 million pixels and raises past twice that: ours is the limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)  # reads the header only
    except Image.DecompressionBombError as exc:
        raise PictureTooLarge(f"{name} is too large a picture ({first_line(exc, 200)})") from None
    except UnidentifiedImageError:
        raise InputError(
            f"cannot decode picture {name}: not a picture edgenn can read (no format Pillow knows)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot decode picture {name}: {first_line(exc, 200)}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise PictureTooLarge(
            f"{name} is a {width}x{height} picture; at most {max_pixels} pixels are decoded (raise max_pixels "
            "to allow it)"
        )
    try:
        image.load()  # decode now, so a truncated file fails here and not later
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot decode picture {name}: {first_line(exc, 200)}") from None
    return image


def _pil_to_grey(image: Any) -> np.ndarray:
    # Transparent drawings (dark ink on nothing) are put on white, as a viewer shows them; a plain
    # convert("L") would drop the alpha and leave dark ink on a dark background.
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return _composite_on_white(rgba) @ _LUMA
    if image.mode in ("I", "I;16", "I;16B", "F"):
        values = np.asarray(image, dtype=np.float32)
        peak = float(values.max())
        return values / peak if peak > 0 else values
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) in [0, 1] -> (H, W, 3) as seen over a white page."""
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + (1.0 - alpha)


def _unit_range(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind == "b":
        return array.astype(np.float32)
    if array.dtype.kind in "iu":
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 65535:
            raise InputError(f"{name}: integer pixels must lie in 0..255 (or 0..65535 for 16-bit), got {low}..{high}")
        # 8-bit pixels unless the values say otherwise (16-bit scans).
        full_scale = 255.0 if high <= 255 else 65535.0
        return array.astype(np.float32) / full_scale
    if array.dtype.kind != "f":
        raise InputError(f"{name}: a picture must hold numbers, got dtype {array.dtype}")
    values = array.astype(np.float32)
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise InputError(
            f"{name}: a float picture must hold values in [0, 1], got {float(np.nanmin(values)):.4g}.."
            f"{float(np.nanmax(values)):.4g}; divide by the full scale (255, or 16 for scikit-learn's digits)"
        )
    return values


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"
