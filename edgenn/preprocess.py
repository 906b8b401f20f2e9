"""Turning pictures into model inputs, in numpy alone: the zoo's digits, and any picture model.

Training (through torch) and the runtime (inside apps) use these same matrices, so an image
reaches an exported model exactly as it reached the model during training.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgenn.errors import InputError
from edgenn.specs import Preprocessing


@lru_cache(maxsize=64)
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights of torch's bilinear interpolation with align_corners=False."""
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    scale = in_size / out_size
    for dst in range(out_size):
        src = max(scale * (dst + 0.5) - 0.5, 0.0)
        lo = int(src)
        hi = lo + 1 if lo < in_size - 1 else lo
        frac = src - lo
        weights[dst, lo] += 1.0 - frac
        weights[dst, hi] += frac
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=64)
def area_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights that average the input pixels each output pixel covers (box filter)."""
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    step = in_size / out_size
    for dst in range(out_size):
        start, stop = dst * step, (dst + 1) * step
        for src in range(int(np.floor(start)), min(int(np.ceil(stop)), in_size)):
            weights[dst, src] = min(stop, src + 1) - max(start, src)
        weights[dst] /= weights[dst].sum()
    weights.setflags(write=False)
    return weights


def resize(images: np.ndarray, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Resize the last two axes of `images` to `size` (bilinear like torch, or area)."""
    height, width = images.shape[-2:]
    make = bilinear_matrix if method == "bilinear" else area_matrix
    rows = make(height, size[0]).astype(np.float32)
    cols = make(width, size[1]).astype(np.float32)
    return (rows @ images.astype(np.float32) @ cols.T).astype(np.float32)


def digits_to_input(images: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Batch of (N, 8, 8) digit images in [0, 1] -> the model's input layout, float32."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise InputError(f"digit images must be (N, H, W), got shape {images.shape}")
    if prep.layout == "flat":
        return images.reshape(len(images), -1)
    if prep.layout == "sequence":
        return images
    if prep.layout == "image":
        return resize(images, prep.size)[:, None, :, :]
    raise InputError(f"unknown preprocessing layout {prep.layout!r}; expected flat, sequence or image")


def picture_to_digit(grey: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """A grey-scale picture (H, W) in [0, 1] of one digit -> an (8, 8) digit like the training data.

    Pictures with a light background (dark ink, as most scans and drawings) are inverted, since
    the training digits are bright ink on black; the result is stretched so its brightest pixel is 1.
    """
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise InputError(f"a digit picture must be a 2-D grey-scale image, got shape {grey.shape}")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 0.5:
        grey = 1.0 - grey
    small = resize(grey, prep.source_size, method="area")
    peak = float(small.max())
    return small / peak if peak > 0 else small


def pixels_to_input(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """A picture model's input (batch of one) from (H, W) grey or (H, W, 3) RGB pixels in [0, 1].

    Resized (bilinear, like torch's interpolate with align_corners=False) to `prep.size`, normalised
    per channel, in `prep.color`'s channel order and `prep.layout`.
    """
    values = np.asarray(pixels, dtype=np.float32)
    if values.ndim == 2:
        values = values[..., None]
    if values.ndim != 3 or values.shape[-1] not in (1, 3):
        raise InputError(f"a picture must be (H, W) grey or (H, W, 3) colour, got shape {values.shape}")
    if prep.channels == 1 and values.shape[-1] == 3:
        values = (values @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    elif prep.channels == 3 and values.shape[-1] == 1:
        values = np.repeat(values, 3, axis=-1)
    planes = values.transpose(2, 0, 1)
    if prep.color == "bgr":
        planes = planes[::-1]
    planes = resize(np.ascontiguousarray(planes), prep.size)
    if prep.mean:
        planes = planes - np.asarray(prep.mean, dtype=np.float32).reshape(-1, 1, 1)
    if prep.std:
        planes = planes / np.asarray(prep.std, dtype=np.float32).reshape(-1, 1, 1)
    laid_out = planes if prep.layout == "NCHW" else planes.transpose(1, 2, 0)
    return np.ascontiguousarray(laid_out[None], dtype=np.float32)
