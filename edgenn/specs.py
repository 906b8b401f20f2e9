"""Plain descriptions shared by every stage: tensor specs, preprocessing, the Runner protocol.

This module is part of the bottom layer: it imports numpy and nothing heavier, so that
``edgenn.runtime`` can use it inside apps that have no torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgenn.errors import InputError

Dim = int | str  # an int is a fixed size, a str names a symbolic (dynamic) dimension

BATCH = "batch"

# Keys of the metadata_props that edgenn writes into every model it exports; values are strings,
# JSON where structured. The runtime reads them, and runs models that have none.
META_PREFIX = "edgenn."
META_VERSION = "edgenn.version"
META_SOURCE = "edgenn.source"
META_INPUTS = "edgenn.inputs"
META_OUTPUTS = "edgenn.outputs"
META_LABELS = "edgenn.labels"
META_PREPROCESSING = "edgenn.preprocessing"
META_ACCURACY = "edgenn.test_accuracy"
META_VERSIONS = "edgenn.library_versions"
META_VALIDATION = "edgenn.validation"

_SUPPORTED_DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (ints are fixed, strings are symbolic) and numpy dtype name of a tensor."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in _SUPPORTED_DTYPES:
            raise InputError(
                f"input {self.name!r}: unsupported dtype {self.dtype!r}; use one of {', '.join(_SUPPORTED_DTYPES)}"
            )

    @property
    def dynamic_dims(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if isinstance(d, str))

    def concrete_shape(self, batch: int = 1, **sizes: int) -> tuple[int, ...]:
        """The shape with symbolic dims filled: the batch dim by `batch`, others by name."""
        out = []
        for d in self.shape:
            if isinstance(d, int):
                out.append(d)
            elif d == BATCH:
                out.append(batch)
            elif d in sizes:
                out.append(sizes[d])
            else:
                example = "x".join(str(x) if isinstance(x, int) else "8" for x in self.shape)
                raise InputError(
                    f"input {self.name!r}: dimension {d!r} is dynamic; give its size "
                    f"(for example --input {self.name}:{example}:{self.dtype})"
                )
        return tuple(out)

    def with_batch(self, batch_dim: Dim) -> TensorSpec:
        return TensorSpec(self.name, (batch_dim, *self.shape[1:]), self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), tuple(data["shape"]), str(data.get("dtype", "float32")))

    @classmethod
    def parse(cls, text: str) -> TensorSpec:
        """Parse ``name:1x3x224x224:float32`` (dtype defaults to float32).

        A dim written as a word (``tokens:batchxseq:int64``) is symbolic; the exporter makes the
        first dim the symbolic batch unless the export is static.
        """
        match = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*:\s*([\w]+(?:x[\w]+)*)\s*(?::\s*(\w+))?\s*", text)
        if not match:
            raise InputError(f"bad input spec {text!r}: write NAME:DIMS[:DTYPE], for example x:1x3x224x224:float32")
        name, dims_text, dtype = match.group(1), match.group(2), match.group(3) or "float32"
        dims: list[Dim] = []
        for part in dims_text.split("x"):
            if part.isdigit():
                if not 0 < int(part) < 2**31:
                    raise InputError(f"bad input spec {text!r}: dimension sizes must be between 1 and 2**31-1")
                dims.append(int(part))
            elif re.fullmatch(r"[A-Za-z_]\w*", part):
                dims.append(part)
            else:
                raise InputError(f"bad input spec {text!r}: dimension {part!r} is neither a size nor a name")
        if dtype not in _SUPPORTED_DTYPES:
            raise InputError(
                f"bad input spec {text!r}: unknown dtype {dtype!r}; use one of {', '.join(_SUPPORTED_DTYPES)}"
            )
        return cls(name, tuple(dims), dtype)

    def __str__(self) -> str:
        return f"{self.name}:{'x'.join(str(d) for d in self.shape)}:{self.dtype}"


@dataclass(frozen=True)
class Preprocessing:
    """How a digit image becomes this model's input; stored in the ONNX metadata.

    Images are grey scale in [0, 1] with bright ink on a dark background (as in scikit-learn's
    digits), first brought to `source_size` (8x8, the resolution the models were trained on),
    then laid out as `layout` says: "flat" (64 values), "sequence" (rows as time steps) or
    "image" (bilinear resize to `size`, one channel).
    """

    layout: str  # "flat" | "sequence" | "image"
    size: tuple[int, int] = (8, 8)
    source_size: tuple[int, int] = (8, 8)
    value_scale: float = 1.0 / 16.0  # digits pixels are 0..16

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"], data["source_size"] = list(self.size), list(self.source_size)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        return cls(
            layout=str(data["layout"]),
            size=tuple(data.get("size", (8, 8))),
            source_size=tuple(data.get("source_size", (8, 8))),
            value_scale=float(data.get("value_scale", 1.0 / 16.0)),
        )


@runtime_checkable
class Runner(Protocol):
    """Anything that maps named numpy inputs to named numpy outputs: ORT sessions on any provider,
    eager torch. `prepared_call` is what the timing harness times: a call with no arguments that
    runs the model on fixed feeds, with everything that is not the model done beforehand."""

    name: str

    def input_specs(self) -> tuple[TensorSpec, ...]: ...

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def prepared_call(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]: ...


def fixed_batch(specs: Sequence[TensorSpec]) -> int | None:
    """The batch size a model insists on (a number as its inputs' first dim), or None where it is dynamic.

    Where inputs disagree, the smallest: the one rule for evaluation, calibration and bench.
    """
    sizes = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int)}
    return min(sizes) if sizes else None
