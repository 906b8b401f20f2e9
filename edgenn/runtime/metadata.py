"""edgenn's metadata in a model file, parsed and checked once, at load: every key's type, range and size.

A value that is wrong is one line naming the key and what is wrong with it, at load, not a
ZeroDivisionError or a 149 GiB allocation at the first picture. A file whose edgenn metadata cannot be
read still runs as a plain ONNX model with `Model(path, metadata="ignore")`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgenn.errors import EdgennError, ModelFileError
from edgenn.specs import (
    META_ACCURACY,
    META_DIM_SIZES,
    META_INPUTS,
    META_LABELS,
    META_OUTPUTS,
    META_PREPROCESSING,
    META_VALIDATION,
    Preprocessing,
)

MAX_LABELS = 1_000_000  # more classes than any classifier has: a bound, so a damaged list is not taken for one
MAX_DIM_SIZE = 1 << 31
_DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")


@dataclass(frozen=True)
class EdgennMetadata:
    """What the runtime uses of edgenn's metadata, each value checked."""

    labels: tuple[str, ...] | None
    preprocessing: Preprocessing | None
    dim_sizes: dict[str, int]


def read_metadata(metadata: Mapping[str, str], label: str, classes: int | None = None) -> EdgennMetadata:
    """Check edgenn's keys of `metadata`; ModelFileError naming the first key that is wrong. `classes` (the
    first output's last dim, where fixed) must match the number of labels."""
    for key in (META_INPUTS, META_OUTPUTS):
        declared = _json(metadata, key, label)
        if declared is not None:
            _check_specs(declared, key, label)
    labels = _labels(_json(metadata, META_LABELS, label), label)
    if labels is not None and classes is not None and len(labels) != classes:
        raise _bad(label, META_LABELS, f"lists {len(labels)} labels for an output of {classes} classes")
    preprocessing = _preprocessing(_json(metadata, META_PREPROCESSING, label), label)
    dim_sizes = _dim_sizes(_json(metadata, META_DIM_SIZES, label), label)
    validation = _json(metadata, META_VALIDATION, label)
    if validation is not None and not isinstance(validation, dict):
        raise _bad(label, META_VALIDATION, "is not a JSON object")
    if META_ACCURACY in metadata:
        try:
            accuracy = float(metadata[META_ACCURACY])
        except ValueError:
            raise _bad(label, META_ACCURACY, f"is {metadata[META_ACCURACY][:40]!r}, not a number") from None
        if not (math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0):
            raise _bad(label, META_ACCURACY, f"is {accuracy!r}, not a fraction from 0 to 1")
    return EdgennMetadata(labels, preprocessing, dim_sizes)


def _bad(label: str, key: str, what: str) -> ModelFileError:
    return ModelFileError(
        f"{label}: metadata {key} {what}; re-export the model, or run it as a plain ONNX model with "
        "Model(path, metadata='ignore') (edgenn predict --ignore-metadata)"
    )


def _json(metadata: Mapping[str, str], key: str, label: str) -> Any:
    if key not in metadata:
        return None
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError):
        raise _bad(label, key, "is not valid JSON") from None


def _check_specs(declared: Any, key: str, label: str) -> None:
    if not isinstance(declared, list):
        raise _bad(label, key, "is not a JSON list of tensors")
    for spec in declared:
        if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)):
            raise _bad(label, key, "holds a tensor without a name")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(
            (type(d) is int and 0 <= d < MAX_DIM_SIZE) or (isinstance(d, str) and d) for d in shape
        ):
            raise _bad(label, key, f"gives {spec['name']!r} the shape {shape!r}: dims are sizes or names")
        if "dtype" in spec and spec["dtype"] not in _DTYPES:
            raise _bad(label, key, f"gives {spec['name']!r} the dtype {spec['dtype']!r}")


def _labels(data: Any, label: str) -> tuple[str, ...] | None:
    if data is None:
        return None
    if not isinstance(data, list) or not data or len(data) > MAX_LABELS:
        raise _bad(label, META_LABELS, "must be a non-empty JSON list of class names")
    if not all(isinstance(item, (str, int)) and not isinstance(item, bool) for item in data):
        raise _bad(label, META_LABELS, "must list class names (strings)")
    return tuple(str(item) for item in data)


def _preprocessing(data: Any, label: str) -> Preprocessing | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise _bad(label, META_PREPROCESSING, "is not a JSON object")
    if "layout" not in data:
        raise _bad(label, META_PREPROCESSING, "has no layout")
    try:
        return Preprocessing.from_dict(data)
    except EdgennError as exc:  # Preprocessing's own check: sizes, colour, mean and std, in one line
        raise _bad(label, META_PREPROCESSING, f"is wrong: {exc}") from None
    except (KeyError, TypeError, ValueError, OverflowError):
        raise _bad(label, META_PREPROCESSING, "holds a value of the wrong type") from None


def _dim_sizes(data: Any, label: str) -> dict[str, int]:
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and type(v) is int and 0 < v < MAX_DIM_SIZE for k, v in data.items()
    ):
        raise _bad(label, META_DIM_SIZES, "must map dim names to positive sizes")
    return dict(data)


__all__ = ["EdgennMetadata", "read_metadata"]
