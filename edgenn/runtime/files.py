"""Classifying what is in a file (a picture or a .npy array): what `edgenn predict` runs.

A .npy is read, in this order, as a batch of model inputs, one model input without its batch
dimension, or a picture (2-D grey or (H, W, 3|4) colour) when the model stores its preprocessing.
Integer arrays are read as pictures (8-bit pixels) before anything else when the model takes
float inputs, since no float model wants raw 0..255 pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.errors import InputError, first_line
from edgenn.runtime.image import DEFAULT_MAX_PIXELS, PICTURE_SUFFIXES, array_to_grey, is_picture_path
from edgenn.runtime.model import ClassScore, Model

READ_AS = ("picture", "batch", "sample", "inputs")


@dataclass(frozen=True)
class FileClassification:
    """The top classes of each sample found in a file, and how the file was read."""

    source: str
    read_as: str  # one of READ_AS
    predictions: tuple[tuple[ClassScore, ...], ...]  # one tuple per sample, best class first

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "read_as": self.read_as,
            "predictions": [[c.to_dict() for c in classes] for classes in self.predictions],
        }


def classify_file(
    model: Model, path: str | os.PathLike[str], top_k: int = 5, max_pixels: int = DEFAULT_MAX_PIXELS
) -> FileClassification:
    """The `top_k` classes for the picture or the .npy array at `path`."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"input file not found: {path}")
    if file.suffix.lower() == ".npy":
        read_as, predictions = classify_array(model, _load_npy(file), top_k, str(path))
        return FileClassification(str(path), read_as, tuple(predictions))
    if is_picture_path(file):
        return FileClassification(str(path), "picture", (model.classify_picture(file, top_k, max_pixels),))
    raise InputError(
        f"cannot read {path}: give a picture ({', '.join(PICTURE_SUFFIXES)}) or a .npy array of model inputs"
    )


def _load_npy(file: Path) -> np.ndarray:
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        first = first_line(exc)
        raise InputError(f"cannot read {file} as a .npy array: {first}") from None


def classify_array(
    model: Model, array: np.ndarray, top_k: int = 5, name: str = "array"
) -> tuple[str, list[tuple[ClassScore, ...]]]:
    """How `array` was read (a batch, one sample or a picture) and the top classes of each sample."""
    if len(model.inputs) != 1:
        raise InputError(
            f"{model.path} has {len(model.inputs)} inputs; one array cannot feed them: use the Python API "
            f"(edgenn.runtime.Model.predict with a dict)"
        )
    spec = model.inputs[0]
    picture_like = array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))
    can_be_picture = model.preprocessing is not None and picture_like
    if can_be_picture and array.dtype.kind in "iu" and np.dtype(spec.dtype).kind == "f":
        return "picture", [model.classify_picture(array_to_grey(array, name), top_k)]
    if _fits(spec.shape, array.shape):
        return "batch", model.classify(array, top_k)
    batched = bool(spec.shape) and (isinstance(spec.shape[0], str) or spec.shape[0] == 1)
    if batched and _fits(spec.shape[1:], array.shape):
        return "sample", [model.classify_one(array, top_k)]
    if can_be_picture:
        return "picture", [model.classify_picture(array_to_grey(array, name), top_k)]
    expected = "(" + ", ".join(map(str, spec.shape)) + ")"
    pictures = " nor a picture (H, W)" if model.preprocessing is not None else ""
    raise InputError(
        f"{name}: an array shaped {array.shape} fits neither a batch {expected} nor one sample without "
        f"the batch dimension{pictures}"
    )


def _fits(dims: tuple[Any, ...], shape: tuple[int, ...]) -> bool:
    if len(dims) != len(shape):
        return False
    return all(isinstance(d, str) or d == s for d, s in zip(dims, shape, strict=True))


def read_inputs(model: Model, path: str | os.PathLike[str]) -> tuple[str, dict[str, np.ndarray]]:
    """The model's inputs from a file, and how it was read: a .npz holds one array per input (by name;
    a one-input model takes any one array), a .npy a batch or one sample, a picture one sample."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"input file not found: {path}")
    names = [s.name for s in model.inputs]
    if file.suffix.lower() == ".npz":
        arrays = _load_npz(file)
        if len(names) == 1 and len(arrays) == 1:
            return "inputs", {names[0]: next(iter(arrays.values()))}
        missing = [n for n in names if n not in arrays]
        if missing:
            raise InputError(
                f"{path} holds arrays {sorted(arrays) or 'none'} but the model's inputs are {names}; "
                f"name one array per input (missing: {', '.join(missing)}), e.g. numpy.savez(f, {names[0]}=...)"
            )
        return "inputs", {n: arrays[n] for n in names}
    if len(names) != 1:
        raise InputError(
            f"{model.path} has {len(names)} inputs ({', '.join(names)}); give a .npz with one array per input"
        )
    if file.suffix.lower() == ".npy":
        array = _load_npy(file)
        spec = model.inputs[0]
        if _fits(spec.shape, array.shape):
            return "batch", {names[0]: array}
        if bool(spec.shape) and _fits(spec.shape[1:], array.shape):
            return "sample", {names[0]: array[None]}
        if model.preprocessing is not None and (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
            return "picture", {names[0]: model.picture_input(array)}
        raise InputError(
            f"{path}: an array shaped {array.shape} fits neither a batch ({', '.join(map(str, spec.shape))}) "
            "nor one sample without the batch dimension"
        )
    if is_picture_path(file):
        return "picture", {names[0]: model.picture_input(file)}
    raise InputError(
        f"cannot read {path}: give a .npz (one array per input), a .npy or a picture ({', '.join(PICTURE_SUFFIXES)})"
    )


def _load_npz(file: Path) -> dict[str, np.ndarray]:
    import zipfile

    try:
        with np.load(file, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"cannot read {file} as a .npz of arrays: {first_line(exc)}; write it with numpy.savez"
        ) from None


def looks_like_scores(model: Model) -> bool:
    """A float (batch, classes) first output with 2 classes or more: what classify() can rank."""
    if not model.outputs:
        return False
    spec = model.outputs[0]
    classes = spec.shape[-1] if len(spec.shape) == 2 else None
    return spec.dtype.startswith("float") and (isinstance(classes, str) or (isinstance(classes, int) and classes > 1))
