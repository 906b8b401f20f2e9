"""Checking inputs before onnxruntime sees them: names, rank, fixed sizes, dtype, finiteness.

Each spec is turned once, at load time, into an InputCheck holding everything the hot path needs
(rank, the fixed axes and their sizes, the numpy dtype), so a call that is right costs a few
comparisons; the messages are built only when something is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from edgenn.errors import InputError
from edgenn.specs import TensorSpec

# ONNX element types (as onnxruntime spells them) -> numpy dtype names.
ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def cast_problem(source: np.dtype, target: np.dtype) -> str | None:
    """Why `source` cannot stand in for `target`, or None when the cast loses nothing a user meant.

    Floats accept any float (float64 -> float32 is what every numpy user passes), integers and
    booleans. Integers accept integers and booleans; a narrowing cast (int64 -> int32) is checked
    against the values by `integer_range_problem`. Booleans accept only booleans. A float never
    becomes an integer: that would truncate silently.
    """
    if source == target:
        return None
    if target.kind == "f":
        return None if source.kind in "biuf" else f"{source}, which cannot be converted to {target}"
    if target.kind in "iu":
        if source.kind in "biu":
            return None
        if source.kind == "f":
            return f"{source}, which would be truncated to {target}; round and cast it yourself"
        return f"{source}, which cannot be converted to {target}"
    if target.kind == "b":
        return None if source.kind == "b" else f"{source}, not booleans"
    return f"{source}, which cannot be converted to {target}"


@dataclass(frozen=True)
class InputCheck:
    """One input's spec, precomputed for the per-call checks."""

    spec: TensorSpec
    dtype: np.dtype
    rank: int
    fixed_axes: tuple[int, ...]
    fixed_sizes: Any  # what `fixed_of(shape)` returns for a good shape: a tuple, or an int for one axis
    fixed_of: Callable[[tuple[int, ...]], Any] | None
    batched: bool  # the first dimension is symbolic (or 1): a sample can be given without it

    @classmethod
    def of(cls, spec: TensorSpec) -> InputCheck:
        axes = tuple(i for i, d in enumerate(spec.shape) if isinstance(d, int))
        sizes = tuple(spec.shape[i] for i in axes)
        getter = itemgetter(*axes) if axes else None
        first = spec.shape[0] if spec.shape else None
        return cls(
            spec=spec,
            dtype=np.dtype(spec.dtype),
            rank=len(spec.shape),
            fixed_axes=axes,
            fixed_sizes=sizes[0] if len(axes) == 1 else sizes,
            fixed_of=getter,
            batched=isinstance(first, str) or first == 1,
        )

    def prepare(self, value: Any, check_finite: bool) -> np.ndarray:
        """The array to feed: `value` checked and, where safe, cast; InputError otherwise."""
        array = value if type(value) is np.ndarray else self.as_array(value)
        shape = array.shape
        if len(shape) != self.rank:
            raise InputError(self._rank_message(shape))
        if self.fixed_of is not None and self.fixed_of(shape) != self.fixed_sizes:
            raise InputError(self._size_message(shape))
        if array.dtype != self.dtype:
            array = self._cast(array)
        if check_finite and self.dtype.kind == "f" and not all_finite(array):
            raise InputError(self._finite_message(array))
        return array

    def as_array(self, value: Any) -> np.ndarray:
        expected = f"input {self.spec.name!r}: expected an array of {self.dtype} shaped {self._shape_text()}"
        try:
            array = np.asarray(value)
        except ValueError:  # numpy refuses nested sequences of unequal lengths
            raise InputError(f"{expected}, got a ragged {type(value).__name__} (rows of different lengths)") from None
        except TypeError:
            raise InputError(f"{expected}, got {type(value).__name__}, which is not an array") from None
        if array.dtype == object:
            raise InputError(f"{expected}, got a ragged or non-numeric {type(value).__name__}")
        return array

    def _cast(self, array: np.ndarray) -> np.ndarray:
        problem = cast_problem(array.dtype, self.dtype)
        if problem is None and self.dtype.kind in "iu" and array.dtype.kind in "iu":
            problem = integer_range_problem(array, self.dtype)
        if problem:
            raise InputError(f"input {self.spec.name!r}: expected dtype {self.dtype}, got {problem}")
        return array.astype(self.dtype)

    def _shape_text(self) -> str:
        return "(" + ", ".join(str(d) for d in self.spec.shape) + ")"

    def _rank_message(self, shape: tuple[int, ...]) -> str:
        name, expected = self.spec.name, self._shape_text()
        if self.batched and len(shape) == self.rank - 1 and self._sample_fits(shape):
            return (
                f"input {name!r}: expected a batch shaped {expected}, got one sample shaped {tuple(shape)} "
                f"without its batch dimension; add it (x[None]) or call predict_one()"
            )
        got = f"got {len(shape)}: shape {tuple(shape)}"
        return f"input {name!r}: expected {self.rank} dimensions {expected}, {got}"

    def _sample_fits(self, shape: tuple[int, ...]) -> bool:
        return all(isinstance(d, str) or d == s for d, s in zip(self.spec.shape[1:], shape, strict=True))

    def _size_message(self, shape: tuple[int, ...]) -> str:
        wrong = [
            f"dimension {i} is {shape[i]}, expected {self.spec.shape[i]}"
            for i in self.fixed_axes
            if shape[i] != self.spec.shape[i]
        ]
        return f"input {self.spec.name!r}: expected shape {self._shape_text()}, got {tuple(shape)} ({'; '.join(wrong)})"

    def _finite_message(self, array: np.ndarray) -> str:
        nan = int(np.isnan(array).sum())
        inf = int(np.isinf(array).sum())
        found = ", ".join(part for part in (f"{nan} NaN" if nan else "", f"{inf} Inf" if inf else "") if part)
        return f"input {self.spec.name!r}: expected finite values, got {found} of {array.size} values"


def all_finite(array: np.ndarray) -> bool:
    """No NaN or Inf in a float array.

    For float32 and float64 the sum of squares (one BLAS call, about 3x faster than
    np.isfinite(...).all()) is finite exactly when every value is, unless the squares overflow
    (values beyond 1e19 in float32); only then is every value tested. NaN and Inf raise no
    floating-point warning in the dot product; an overflow does, which such inputs deserve.
    float16 squares overflow from 256 on, so float16 is always tested value by value.
    """
    if array.dtype.itemsize >= 4:
        flat = array.ravel()
        if math.isfinite(float(np.dot(flat, flat))):
            return True
    return bool(np.isfinite(array).all())


def integer_range_problem(array: np.ndarray, target: np.dtype) -> str | None:
    """A narrowing integer cast is allowed only when every value fits the target type."""
    if np.can_cast(array.dtype, target, "safe") or array.size == 0:
        return None
    info = np.iinfo(target)
    low, high = int(array.min()), int(array.max())
    if low < info.min or high > info.max:
        return f"{array.dtype} with values {low}..{high}, outside {target}'s range {info.min}..{info.max}"
    return None


def name_problem(given: Sequence[str], expected: Sequence[str]) -> str:
    """The message for a feed dict whose names do not match the model's inputs."""
    missing = [n for n in expected if n not in given]
    unknown = [n for n in given if n not in expected]
    parts = []
    if missing:
        parts.append(f"missing input {', '.join(repr(n) for n in missing)}")
    if unknown:
        parts.append(f"unknown input {', '.join(repr(n) for n in unknown)}")
    return f"{'; '.join(parts)}: the model's inputs are {', '.join(repr(n) for n in expected)}"


def single_input_problem(expected: Sequence[str], given: Any) -> str:
    return (
        f"the model has {len(expected)} inputs ({', '.join(repr(n) for n in expected)}): pass a dict "
        f"{{name: array}}, not a single {type(given).__name__}"
    )


def check_feeds(
    inputs: Any, checks: Sequence[InputCheck], names: Sequence[str], check_finite: bool
) -> dict[str, np.ndarray]:
    """The feed dict for onnxruntime, every input checked; the slow, general path."""
    if not isinstance(inputs, Mapping):
        if len(checks) != 1:
            raise InputError(single_input_problem(names, inputs))
        return {names[0]: checks[0].prepare(inputs, check_finite)}
    if len(inputs) != len(names) or any(n not in inputs for n in names):
        raise InputError(name_problem(list(inputs), names))
    return {c.spec.name: c.prepare(inputs[c.spec.name], check_finite) for c in checks}
