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
# sizes of named dynamic dims (other than batch) the export was validated at: defaults for bench and quantize
META_DIM_SIZES = "edgenn.dim_sizes"
# A checksum of the whole file with its own value zeroed ("crc32:" + 8 hex digits), checked at every load;
# META_FORMAT 2 says the file was written with one, so a damaged digest entry is not taken for an old file.
META_DIGEST = "edgenn.digest"
META_FORMAT = "edgenn.metadata_format"
METADATA_FORMAT = 2
# the digest of the float32 file a quantized or tuned file was made from: which model it is a version of
META_SOURCE_DIGEST = "edgenn.source_digest"
# Per-node metadata (NodeProto.metadata_props): the path of the PyTorch module whose forward made the
# node ("layer1.bn1"; "" for the top-level module), kept from the exporter's scopes for compare --layerwise.
NODE_MODULE = "edgenn.module"

_SUPPORTED_DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")


def split_dims(text: str) -> list[str]:
    """``1x3x224`` -> ["1", "3", "224"]; ``1xmax_len`` -> ["1", "max_len"]; ``1,maxlen`` -> ["1", "maxlen"]."""
    if "," in text:
        return [part.strip() for part in text.split(",")]
    pieces = text.split("x")
    parts = [pieces[0]]
    for piece in pieces[1:]:
        # an x is a separator unless one side would be empty or begin or end with "_" (max_len, x_pos)
        joined = not parts[-1] or not piece or parts[-1].endswith("_") or piece.startswith("_")
        if joined:
            parts[-1] = f"{parts[-1]}x{piece}"
        else:
            parts.append(piece)
    return parts


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
        first dim the symbolic batch unless the export is static. Dims are separated by ``x`` or
        by commas; an ``x`` inside a word stays part of it where splitting there would leave a
        piece that starts or ends with ``_`` (``ids:1xmax_len`` is 1 and max_len); write the dims
        with commas where a name holds an ``x`` between letters (``ids:1,maxlen`` or ``1,index``).
        """
        match = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*:\s*([\w,]+)\s*(?::\s*(\w+))?\s*", text)
        if not match:
            raise InputError(f"bad input spec {text!r}: write NAME:DIMS[:DTYPE], for example x:1x3x224x224:float32")
        name, dims_text, dtype = match.group(1), match.group(2), match.group(3) or "float32"
        dims: list[Dim] = []
        for part in split_dims(dims_text):
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
        # commas where a dim's name holds an x, so that what is printed parses back to the same dims
        sep = "," if any(isinstance(d, str) and "x" in d for d in self.shape) else "x"
        return f"{self.name}:{sep.join(str(d) for d in self.shape)}:{self.dtype}"


DIGIT_LAYOUTS = ("flat", "sequence", "image")
PICTURE_LAYOUTS = ("NCHW", "NHWC")
COLORS = ("rgb", "bgr", "grey")
MAX_PICTURE_SIDE = 16384  # a stated bound: a picture size in metadata beyond it is refused, not allocated
MAX_PICTURE_PIXELS = 4096 * 4096  # and the pixels of the size a picture is resized to (a 200 MB float32 input)


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes this model's input; stored in the ONNX metadata.

    Two families. The zoo's digits (`layout` flat, sequence or image): grey scale in [0, 1] with
    bright ink on a dark background (as in scikit-learn's digits), first brought to `source_size`
    (8x8, the resolution the models were trained on), then laid out as "flat" (64 values),
    "sequence" (rows as time steps) or "image" (bilinear resize to `size`, one channel).

    Any other picture model (`layout` NCHW or NHWC, set with `edgenn export --preprocess`): the
    picture in `color` (rgb, bgr or grey), pixels scaled to [0, 1], resized (bilinear) to `size`
    (height, width), then `(x - mean) / std` per channel, laid out channels first or last.
    """

    layout: str  # "flat" | "sequence" | "image" (digits) | "NCHW" | "NHWC" (pictures)
    size: tuple[int, int] = (8, 8)
    source_size: tuple[int, int] = (8, 8)
    value_scale: float = 1.0 / 16.0  # digits pixels are 0..16
    color: str = "grey"  # pictures: rgb | bgr | grey
    mean: tuple[float, ...] = ()  # pictures: one per channel (or one for all); () is 0
    std: tuple[float, ...] = ()  # pictures: one per channel (or one for all); () is 1

    def __post_init__(self) -> None:
        layouts = (*DIGIT_LAYOUTS, *PICTURE_LAYOUTS)
        if self.layout not in layouts:
            raise InputError(f"preprocessing layout {self.layout!r} is unknown; use one of {', '.join(layouts)}")
        for what, pair in (("size", self.size), ("source_size", self.source_size)):
            if not _is_size(pair):
                raise InputError(
                    f"preprocessing {what} must be two whole numbers from 1 to {MAX_PICTURE_SIDE}, got {pair!r}"
                )
        if self.color not in COLORS:
            raise InputError(f"preprocessing color {self.color!r} is unknown; use one of {', '.join(COLORS)}")
        channels = self.channels
        for what, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (0, 1, channels) or not all(_is_finite_number(v) for v in values):
                raise InputError(
                    f"preprocessing {what} must be 1 or {channels} finite numbers for {self.color}, got {values!r}"
                )
        if any(v <= 0 for v in self.std):
            raise InputError(f"preprocessing std must be positive, got {self.std!r}")
        if not (_is_finite_number(self.value_scale) and self.value_scale > 0):
            raise InputError(f"preprocessing value_scale must be a positive number, got {self.value_scale!r}")
        if self.size[0] * self.size[1] > MAX_PICTURE_PIXELS:
            raise InputError(
                f"preprocessing size {self.size[0]}x{self.size[1]} is over {MAX_PICTURE_PIXELS} pixels: no model "
                "input is that large"
            )

    @property
    def is_digits(self) -> bool:
        return self.layout in DIGIT_LAYOUTS

    @property
    def channels(self) -> int:
        return 1 if self.color == "grey" else 3

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"], data["source_size"] = list(self.size), list(self.source_size)
        if self.is_digits:  # the digits' metadata stays as it always was
            for key in ("color", "mean", "std"):
                data.pop(key)
        else:
            data.pop("source_size")
            data.pop("value_scale")
            data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        if not isinstance(data, Mapping):
            raise InputError(f"preprocessing must be a JSON object, got {type(data).__name__}")
        layout = str(data["layout"])
        return cls(
            layout=layout,
            size=_pair(data.get("size", (8, 8))),
            source_size=_pair(data.get("source_size", (8, 8))),
            value_scale=float(data.get("value_scale", 1.0 / 16.0 if layout in DIGIT_LAYOUTS else 1.0)),
            color=str(data.get("color", "grey")),
            mean=tuple(float(v) for v in _numbers(data.get("mean", []), "mean")),
            std=tuple(float(v) for v in _numbers(data.get("std", []), "std")),
        )

    @classmethod
    def parse(cls, text: str) -> Preprocessing:
        """`size=224x224,mean=0.485,0.456,0.406,std=0.229,0.224,0.225,layout=NCHW,color=rgb`.

        Values of mean and std run on after commas until the next KEY=; layout defaults to NCHW,
        color to rgb.
        """
        fields: dict[str, list[str]] = {}
        key = None
        for part in (p.strip() for p in text.split(",")):
            if "=" in part:
                key, value = (v.strip() for v in part.split("=", 1))
                if key not in ("size", "mean", "std", "layout", "color"):
                    raise InputError(
                        f"--preprocess {text!r}: unknown key {key!r}; use size, mean, std, layout and color"
                    )
                fields[key] = [value] if value else []
            elif part and key in ("mean", "std"):
                fields[key].append(part)
            elif part:
                raise InputError(f"--preprocess {text!r}: {part!r} belongs to no key; write KEY=VALUE")
        if "size" not in fields:
            raise InputError(f"--preprocess {text!r}: give the picture size the model takes, e.g. size=224x224")
        size_text = fields["size"][0] if fields["size"] else ""
        try:
            height, width = (int(v) for v in size_text.lower().split("x"))
            mean = tuple(float(v) for v in fields.get("mean", []))
            std = tuple(float(v) for v in fields.get("std", []))
        except ValueError:
            raise InputError(
                f"--preprocess {text!r}: size is HEIGHTxWIDTH (224x224) and mean/std are numbers"
            ) from None
        layout = (fields.get("layout") or ["NCHW"])[0].upper()
        if layout not in PICTURE_LAYOUTS:
            raise InputError(f"--preprocess {text!r}: layout must be NCHW or NHWC")
        color = (fields.get("color") or ["rgb"])[0].lower().replace("gray", "grey")
        return cls(layout, (height, width), value_scale=1.0, color=color, mean=mean, std=std)

    def describe(self) -> str:
        if self.is_digits:
            text = f"grey-scale digit, {self.source_size[0]}x{self.source_size[1]} in [0, 1], layout {self.layout}"
            return text + (f" resized to {self.size[0]}x{self.size[1]}" if self.layout == "image" else "")
        norm = f", minus mean {list(self.mean)}" if self.mean else ""
        norm += f", over std {list(self.std)}" if self.std else ""
        return f"{self.color} picture resized to {self.size[0]}x{self.size[1]}, pixels in [0, 1]{norm}, {self.layout}"


def _numbers(value: Any, what: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise InputError(f"preprocessing {what} must be a list of numbers, got {value!r}")
    return list(value)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (value[0], value[1])
    raise InputError(f"a picture size must be a pair [height, width], got {value!r}")


def _is_size(pair: Any) -> bool:
    return (
        isinstance(pair, tuple) and len(pair) == 2 and all(type(v) is int and 0 < v <= MAX_PICTURE_SIDE for v in pair)
    )


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


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
