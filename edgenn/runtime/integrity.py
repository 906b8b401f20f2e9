"""What a model file holds, read from its bytes before onnxruntime sees it: edgenn's digest, its metadata,
and the faults that make a model answer wrongly without an error.

onnxruntime loads a file with a flipped byte in a weight, NaN weights, a quantization scale of zero or an
initializer that shadows the input, and runs it. Every file edgenn writes carries a digest in its
metadata (`edgenn.digest`, "mix64:" and 16 hex digits: a 64-bit hash of the whole file with the digest's
own value zeroed, see `digest_of`), checked at every load; every file without one, ours or not, is
scanned for those faults instead. The scan reads the protobuf's wire format directly (a few fields of
ModelProto, GraphProto, NodeProto and TensorProto), so the runtime needs neither the onnx package nor a
second parse of the graph.

Why not SHA-256 or CRC-32: the check runs on every `Model()`, whose load takes 1.3-6.5 ms for the zoo;
SHA-256 costs up to 34% of that and zlib's CRC-32 up to 14% (simple_cnn, 1.65 MB), the numpy hash under 4%
(tools/integrity_cost.py). It catches every change inside one 64-bit word and all but about one in 2**64
others. It is not a signature: someone who edits a file on purpose can compute a new one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgenn.errors import ModelFileError, ModelWarning
from edgenn.specs import META_DIGEST, META_FORMAT, META_INPUTS, METADATA_FORMAT

DIGEST_SCHEME = "mix64:"
DIGEST_LENGTH = len(DIGEST_SCHEME) + 16
_PLACEHOLDER = DIGEST_SCHEME + "0" * 16

# Field numbers of onnx.proto that the scan reads.
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_METADATA = 1, 5, 11, 16
_NODE_ATTRIBUTE, _ATTRIBUTE_TENSOR = 5, 5
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE = 1, 2, 4
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_FLOATS, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 4, 8, 9
_TENSOR_DOUBLES, _TENSOR_LOCATION = 10, 14
_FLOAT_TYPES = {1: np.dtype("<f4"), 10: np.dtype("<f2"), 11: np.dtype("<f8"), 16: np.dtype("<u2")}  # 16: bfloat16

# Inputs that are quantization scales, by operator (QLinearConcat: y_scale first, then every third).
_SCALE_INPUTS = {
    "QuantizeLinear": (1,),
    "DequantizeLinear": (1,),
    "QLinearConv": (1, 4, 6),
    "QLinearMatMul": (1, 4, 6),
    "QLinearAdd": (1, 4, 6),
    "QLinearMul": (1, 4, 6),
    "QGemm": (1, 4, 7),
    "QLinearSigmoid": (1, 3),
    "QLinearLeakyRelu": (1, 3),
    "QLinearSoftmax": (1, 3),
    "QLinearGlobalAveragePool": (1, 3),
    "QLinearAveragePool": (1, 3),
    "DynamicQuantizeMatMul": (2,),
    "MatMulIntegerToFloat": (2, 3),
}


@dataclass(frozen=True)
class FileFacts:
    """What the scan found: the metadata (decoded), the digest's verdict, and the warnings to give.

    Errors are not kept here: `examine` raises them.
    """

    metadata: dict[str, str]
    digest: str | None  # the digest the file carries, None where it has none
    warnings: tuple[str, ...] = ()
    undecodable: tuple[str, ...] = field(default=())  # metadata keys whose value is not UTF-8 (ignored)


class _Malformed(Exception):
    """Bytes that are not the protobuf the scan expected: onnxruntime says what is wrong with them."""


def examine(data: bytes, label: str, metadata: str = "strict") -> FileFacts | None:
    """Check a model file's bytes before it is loaded: ModelFileError for a digest that does not match,
    a digest that should be there and is not, NaN weights, bad quantization scales, no inputs; the facts
    (with warnings for ±Inf weights and shadowed inputs) otherwise.

    None where the bytes are not an ONNX protobuf the scan can read (an ORT-format file, a truncated one):
    onnxruntime's own load decides. With `metadata="ignore"` edgenn's metadata, the digest with it, is
    not read: the file runs as a plain ONNX model, still scanned for faults.
    """
    strict = metadata == "strict"
    try:
        parts = _model_parts(data)
        entries, undecodable = _metadata_entries(data, parts.metadata, label, strict=strict)
        digest = _check_digest(data, parts.metadata, entries, parts.graph, label) if strict else None
        # A file whose digest holds was scanned when edgenn wrote it (sealed_bytes): the scan is not redone.
        problems = () if digest is not None else _scan_graph(data, parts.graph).problems(entries if strict else {})
    except _Malformed:
        return None
    for problem in problems:
        if problem.error:
            raise ModelFileError(f"{label}: {problem.what} (error: {problem.why}); {problem.fix}")
    warnings = tuple(f"{label}: {p.what} (warning: {p.why})" for p in problems)
    return FileFacts(metadata=entries if strict else {}, digest=digest, warnings=warnings, undecodable=undecodable)


# ------------------------------------------------------------------------------------------ digest
def seal(data: bytes) -> bytes:
    """The file with its digest placeholder (written by `with_placeholder`) replaced by its digest."""
    parts = _model_parts(data)
    found = _digest_value_span(data, parts.metadata)
    if found is None or bytes(data[found[0] : found[1]]) != _PLACEHOLDER.encode():
        raise ValueError("seal: the model has no digest placeholder; call with_placeholder before serialising")
    start, end = found
    return data[:start] + digest_of(data, start, end).encode() + data[end:]


def sealed_bytes(model: Any, label: str) -> bytes:
    """An onnx ModelProto serialised with its digest (and the metadata format that says it has one),
    scanned first: a model with NaN weights, a bad quantization scale or no input to feed is refused
    (ModelFileError naming `label`), since a load would skip the scan of a file whose digest holds."""
    with_placeholder(model)
    data = model.SerializeToString()
    try:
        parts = _model_parts(data)
    except _Malformed:
        raise ModelFileError(f"{label}: the model has no graph; edgenn does not write such a model") from None
    entries, _ = _metadata_entries(data, parts.metadata, label, strict=True)
    for problem in _scan_graph(data, parts.graph).problems(entries):
        if problem.error:
            raise ModelFileError(f"{label}: {problem.what} ({problem.why}); edgenn does not write such a model")
        warnings.warn(f"{label}: {problem.what} (warning: {problem.why})", ModelWarning, stacklevel=2)
    return seal(data)


def unseal(model: Any) -> Any:
    """`model` (an onnx ModelProto) without its digest and metadata format: a graph edgenn derives from a
    sealed file (pre-processed, cut, marked) is not that file, and is sealed again only if written as ours."""
    for props in (model.metadata_props, model.graph.metadata_props):
        kept = [(p.key, p.value) for p in props if p.key not in (META_DIGEST, META_FORMAT)]
        del props[:]
        for key, value in kept:
            props.add(key=key, value=value)
    return model


def with_placeholder(model: Any) -> None:
    """Set `model`'s digest entry to zeros (last, after all other metadata) and its metadata format, in the
    model's metadata and in the graph's: the graph's lies before the model's metadata in the file, so a
    file cut at the end of its graph still says it had a digest."""
    unseal(model)
    model.graph.metadata_props.add(key=META_FORMAT, value=str(METADATA_FORMAT))
    model.metadata_props.add(key=META_FORMAT, value=str(METADATA_FORMAT))
    model.metadata_props.add(key=META_DIGEST, value=_PLACEHOLDER)


def digest_of(data: bytes, start: int, end: int) -> str:
    """The digest of `data` with bytes [start, end) (the digest's value) read as the placeholder.

    mix64: the file read as little-endian 64-bit words a_i (the last one padded with zeros), and
    h = (sum of a_i * w_i) + 8 * length, mod 2**64, with w_i = splitmix64(i) made odd. An odd w_i has an
    inverse mod 2**64, so a change inside any one word always changes h; a random change of several words
    goes unnoticed with a chance of about 2**-64. numpy does it at memory speed (10+ GB/s here, where
    zlib's CRC-32 runs at 3.6 and SHA-256 at 1.5: the zoo's 1.65 MB simple_cnn loads in 3.2 ms, and CRC-32
    cost 14% of that)."""
    placeholder = _PLACEHOLDER.encode()
    if end - start != len(placeholder):  # a value of another length: not ours, so no digest matches it
        return ""
    first = start // 8  # the words before the digest's are read in place; the rest (a few KB of
    # metadata at the end of the file) is copied, the digest read as the placeholder, padded to a word
    rest = bytearray(data[first * 8 :])
    rest[start - first * 8 : end - first * 8] = placeholder
    rest += bytes(-len(rest) % 8)
    weights = _weights(first + len(rest) // 8)
    with np.errstate(over="ignore"):
        # einsum sums the products without an intermediate array: 15% faster than (a * w).sum() here
        total = np.einsum("i,i->", np.frombuffer(data, dtype="<u8", count=first), weights[:first])
        total += np.einsum("i,i->", np.frombuffer(bytes(rest), dtype="<u8"), weights[first : first + len(rest) // 8])
        total += np.uint64(8 * len(data) % (1 << 64))
    return f"{DIGEST_SCHEME}{int(total):016x}"


_WEIGHTS = np.zeros(0, dtype=np.uint64)


def _weights(count: int) -> np.ndarray:
    """w_0 .. w_{count-1}: splitmix64 of the word's index, made odd; computed once and grown by doubling."""
    global _WEIGHTS
    if len(_WEIGHTS) < count:
        size = max(count, 2 * len(_WEIGHTS), 1 << 12)
        z = (np.arange(1, size + 1, dtype=np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        _WEIGHTS = (z ^ (z >> np.uint64(31))) | np.uint64(1)
    return _WEIGHTS


def file_digest(data: bytes) -> str | None:
    """The digest a file carries (None for a file without one, or bytes that are not ONNX)."""
    try:
        parts = _model_parts(data)
        span = _digest_value_span(data, parts.metadata)
    except _Malformed:
        return None
    return None if span is None else bytes(data[span[0] : span[1]]).decode("ascii", "replace")


def _check_digest(
    data: bytes, spans: list[_Entry], entries: Mapping[str, str], graph: tuple[int, int] | None, label: str
) -> str | None:
    span = _digest_value_span(data, spans)
    if span is None:
        if entries.get(META_FORMAT, "") not in ("", "1") or _graph_format(data, graph) not in ("", "1"):
            raise ModelFileError(
                f"{label}: edgenn wrote this file with a digest, and it is gone (damaged, or edited after "
                f"export); re-export it, or run it as a plain ONNX model with {_AS_PLAIN}"
            )
        return None  # a file edgenn did not write, or wrote before digests: nothing to check
    stored = bytes(data[span[0] : span[1]]).decode("ascii", "replace")
    if stored != digest_of(data, *span):
        raise ModelFileError(
            f"{label}: its content no longer matches the digest edgenn wrote into it (damaged, or edited after "
            f"export); re-export it, or run it as a plain ONNX model with {_AS_PLAIN}"
        )
    return stored


def _digest_value_span(data: bytes, entries: list[_Entry]) -> tuple[int, int] | None:
    """Where the digest's value lies in the file (the last entry with its key), if it has one."""
    found = None
    for key, value in entries:
        if key == _DIGEST_KEY:
            found = value  # a value of another length cannot match: digest_of reads it as the placeholder
    return found


# ---------------------------------------------------------------------------------------- metadata
def _metadata_entries(
    data: bytes, spans: list[_Entry], label: str, strict: bool
) -> tuple[dict[str, str], tuple[str, ...]]:
    entries: dict[str, str] = {}
    undecodable: list[str] = []
    for key, (a, b) in spans:
        try:
            entries[key.decode("utf-8")] = data[a:b].decode("utf-8")
        except UnicodeDecodeError:
            name = key.decode("utf-8", "replace")
            if strict and name.startswith("edgenn."):
                raise ModelFileError(
                    f"{label}: metadata {name} is not UTF-8 text (damaged, or edited after export); re-export it, "
                    f"or run it as a plain ONNX model with {_AS_PLAIN}"
                ) from None
            undecodable.append(name)  # someone else's key: not ours to judge, left out
    return entries, tuple(undecodable)


def _entry(data: bytes, start: int, end: int) -> _Entry:
    """A StringStringEntryProto's (key, value span): key (field 1) and value (field 2)."""
    key, value = b"", (start, start)
    for number, wire, a, b in _fields(data, start, end):
        if wire == 2 and number == 1:
            key = data[a:b]
        elif wire == 2 and number == 2:
            value = (a, b)
    return key, value


# ------------------------------------------------------------------------------------------- graph
@dataclass(frozen=True)
class _Problem:
    what: str
    why: str
    fix: str = ""
    error: bool = True


@dataclass
class _GraphScan:
    inputs: list[str] = field(default_factory=list)
    initializers: set[str] = field(default_factory=set)
    nan: list[tuple[str, int]] = field(default_factory=list)
    infinite: list[tuple[str, int]] = field(default_factory=list)
    lone_nan: list[str] = field(default_factory=list)  # constants of one value that is NaN
    bad_scales: list[tuple[str, str, float]] = field(default_factory=list)  # (initializer, op type, a value)

    def problems(self, metadata: Mapping[str, str]) -> tuple[_Problem, ...]:
        """What is wrong, errors first: an error where the outputs cannot be right, a warning where they
        can (a -inf mask, an old exporter's weight inputs)."""
        found = []
        shadowed = [name for name in self.inputs if name in self.initializers]
        fed = [name for name in self.inputs if name not in self.initializers]
        lost = [name for name in shadowed if name in _declared_inputs(metadata)]
        if not fed:
            what = (
                f"its only input {shadowed[0]!r} is shadowed by an initializer of the same name"
                if len(shadowed) == 1
                else "every input is shadowed by an initializer of the same name"
                if shadowed
                else "its graph has no inputs"
            )
            found.append(_Problem(what, "no input reaches the model: every call returns one constant", _REEXPORT))
        elif lost:
            found.append(
                _Problem(
                    f"initializer {lost[0]!r} shadows the input it was exported with",
                    "onnxruntime uses the stored values and ignores what is fed",
                    _REEXPORT,
                )
            )
        if self.nan:
            name, count = self.nan[0]
            found.append(
                _Problem(
                    f"initializer {name!r} holds {count} NaN value(s){_more(self.nan)}",
                    "every output they reach is NaN or meaningless",
                    _REEXPORT,
                )
            )
        if self.bad_scales:
            name, op_type, value = self.bad_scales[0]
            found.append(
                _Problem(
                    f"quantization scale {name!r} of {op_type} is {value!r}",
                    "a scale must be positive and finite, or dequantized values are 0, infinite or of the wrong sign",
                    "quantize the float32 model again",
                )
            )
        if shadowed and fed and not lost:
            more = f" and {len(shadowed) - 1} more" if len(shadowed) > 1 else ""
            found.append(
                _Problem(
                    f"graph input {shadowed[0]!r}{more} has an initializer of the same name",
                    "a default onnxruntime uses unless it is fed, as old exporters made every weight; predict "
                    "feeds only the other inputs",
                    error=False,
                )
            )
        if self.infinite:
            name, count = self.infinite[0]
            found.append(
                _Problem(
                    f"initializer {name!r} holds {count} infinite value(s){_more(self.infinite)}",
                    "masks use -inf on purpose, damage puts it anywhere: check the outputs",
                    error=False,
                )
            )
        if self.lone_nan:
            found.append(
                _Problem(
                    f"constant {self.lone_nan[0]!r} is NaN",
                    "a fill value (masked_fill with nan) is one NaN on purpose; check the outputs",
                    error=False,
                )
            )
        return tuple(sorted(found, key=lambda p: not p.error))


_REEXPORT = "re-export it"
# how a user runs a file whose edgenn metadata is damaged: the Python API, and the CLI's predict/bench flag
_AS_PLAIN = "Model(path, metadata='ignore') (edgenn predict --ignore-metadata)"


def _more(found: list[Any]) -> str:
    return f" (and {len(found) - 1} more initializers)" if len(found) > 1 else ""


def _graph_format(data: bytes, graph: tuple[int, int] | None) -> str:
    """The metadata format the graph's own metadata records ("" for none)."""
    for number, wire, a, b in _fields(data, *graph) if graph is not None else ():
        if wire == 2 and number == _GRAPH_METADATA:
            key, (x, y) = _entry(data, a, b)
            if key == _FORMAT_KEY:
                return data[x:y].decode("utf-8", "replace")
    return ""


def _declared_inputs(metadata: Mapping[str, str]) -> set[str]:
    try:
        declared = json.loads(metadata.get(META_INPUTS, "[]"))
    except (ValueError, RecursionError):
        return set()
    if not isinstance(declared, list):
        return set()
    return {str(d["name"]) for d in declared if isinstance(d, dict) and "name" in d}


def _scan_graph(data: bytes, span: tuple[int, int] | None) -> _GraphScan:
    scan = _GraphScan()
    if span is None:
        return scan
    tensors: dict[str, tuple[int, int]] = {}
    nodes = []
    for number, wire, a, b in _fields(data, *span):
        if wire != 2:
            continue
        if number == _GRAPH_NODE:
            node = _node(data, a, b)
            nodes.append(node)
            if node[0] == "Constant":  # its value is a weight as much as an initializer is
                for k, tensor in enumerate(_constant_tensors(data, a, b)):
                    tensors[f"{node[2][0] if node[2] else 'Constant'}" + (f"#{k}" if k else "")] = tensor
        elif number == _GRAPH_INITIALIZER:
            name = _first_string(data, a, b, _TENSOR_NAME)
            scan.initializers.add(name)
            tensors[name] = (a, b)
        elif number == _GRAPH_INPUT:
            scan.inputs.append(_first_string(data, a, b, 1))
    scales = _scale_names(nodes)
    scale_names = {name for name, _ in scales}  # a scale that is not finite is said as a bad scale
    floats = {
        name: v
        for name, span in tensors.items()
        if name not in scale_names and (v := _float_values(data, *span)) is not None
    }
    by_type: dict[np.dtype, list[np.ndarray]] = {}
    for values in floats.values():
        by_type.setdefault(values.dtype, []).append(values)
    # one pass over all the weights of a type (a check per initializer costs 10x more on the zoo); only
    # where something is not finite are the initializers looked at one by one
    if any(sum(_non_finite(np.concatenate(group))) for group in by_type.values()):
        for name, values in floats.items():
            nan, inf = _non_finite(values)
            if nan and values.size > 1:
                scan.nan.append((name, nan))
            elif nan:  # one NaN alone is a fill value (masked_fill(x, nan)) more often than damage
                scan.lone_nan.append(name)
            if inf:
                scan.infinite.append((name, inf))
    for name, op_type in scales:
        values = _float_values(data, *tensors[name]) if name in tensors else None  # else computed at run time
        if values is None or values.dtype == np.dtype("<u2") or values.size == 0:
            continue
        values = values.astype(np.float64)
        good = np.isfinite(values) & (values > 0)
        if not good.all():
            scan.bad_scales.append((name, op_type, float(values[~good][0])))
    return scan


def _node(data: bytes, a: int, b: int) -> tuple[str, list[str], list[str]]:
    """A node's (op type, inputs, outputs): op_type follows input, output and name (fields 1-3), so the
    rest (attributes, the often long metadata) is not read."""
    inputs: list[str] = []
    outputs: list[str] = []
    for number, wire, x, y in _fields(data, a, b):
        if wire != 2:
            continue
        if number == _NODE_INPUT:
            inputs.append(bytes(data[x:y]).decode("utf-8", "replace"))
        elif number == _NODE_OUTPUT:
            outputs.append(bytes(data[x:y]).decode("utf-8", "replace"))
        elif number == _NODE_OP_TYPE:
            return bytes(data[x:y]).decode("utf-8", "replace"), inputs, outputs
    return "", inputs, outputs


def _scale_names(nodes: list[tuple[str, list[str], list[str]]]) -> list[tuple[str, str]]:
    """(value name, op type) of every quantization scale the nodes take: the scale inputs of the QDQ and
    QLinear operators, and the weight scales of dynamic quantization (a Mul by a DynamicQuantizeLinear's
    scale output, as onnxruntime's quantizer builds MatMulInteger and ConvInteger)."""
    found = []
    dynamic_scales = {outputs[1] for op, _, outputs in nodes if op == "DynamicQuantizeLinear" and len(outputs) > 1}
    for op_type, inputs, _ in nodes:
        if op_type == "QLinearConcat":
            positions: tuple[int, ...] = (0, *range(3, len(inputs), 3))
        elif op_type == "Mul" and len(inputs) == 2 and dynamic_scales & set(inputs):
            positions = (1,) if inputs[0] in dynamic_scales else (0,)
        else:
            positions = _SCALE_INPUTS.get(op_type, ())
        found += [(inputs[p], op_type) for p in positions if p < len(inputs)]
    return found


def _constant_tensors(data: bytes, a: int, b: int) -> list[tuple[int, int]]:
    """The TensorProto spans of a Constant node's attributes (its `value`)."""
    found = []
    for number, wire, x, y in _fields(data, a, b):
        if wire == 2 and number == _NODE_ATTRIBUTE:
            found += [(p, q) for n, w, p, q in _fields(data, x, y) if w == 2 and n == _ATTRIBUTE_TENSOR]
    return found


def _first_string(data: bytes, a: int, b: int, wanted: int) -> str:
    for number, wire, x, y in _fields(data, a, b):
        if wire == 2 and number == wanted:
            return bytes(data[x:y]).decode("utf-8", "replace")
    return ""


def _float_values(data: bytes, a: int, b: int) -> np.ndarray | None:
    """A float tensor's values (bfloat16 as its raw 16 bits), None for other types and external data."""
    data_type, raw, packed = 0, None, None
    loose: list[bytes] = []  # float_data / double_data written one element per field (not packed)
    for number, wire, x, y in _fields(data, a, b):
        if number == _TENSOR_TYPE and wire == 0:
            data_type = x
        elif number == _TENSOR_RAW and wire == 2:
            raw = (x, y)
        elif number in (_TENSOR_FLOATS, _TENSOR_DOUBLES) and wire == 2:
            packed = (x, y, "<f4" if number == _TENSOR_FLOATS else "<f8")
        elif (number, wire) in ((_TENSOR_FLOATS, 5), (_TENSOR_DOUBLES, 1)):
            loose.append(data[x:y])
        elif number == _TENSOR_LOCATION and wire == 0 and x == 1:
            return None  # external data: the weights are in another file
    dtype = _FLOAT_TYPES.get(data_type)
    if dtype is None:
        return None
    if raw is not None:
        x, y = raw
        return np.frombuffer(data, dtype=dtype, count=(y - x) // dtype.itemsize, offset=x)
    if packed is not None and data_type in (1, 11):
        x, y, kind = packed
        return np.frombuffer(data, dtype=kind, count=(y - x) // np.dtype(kind).itemsize, offset=x)
    if loose and data_type in (1, 11):
        return np.frombuffer(b"".join(loose), dtype="<f4" if data_type == 1 else "<f8")
    return None


def _non_finite(values: np.ndarray) -> tuple[int, int]:
    """(NaN count, ±Inf count); bfloat16 read from its bits (exponent all ones)."""
    if values.size == 0:
        return 0, 0
    if values.dtype == np.dtype("<u2"):
        special = (values & 0x7F80) == 0x7F80
        if not special.any():
            return 0, 0
        nan = int(np.count_nonzero(special & ((values & 0x007F) != 0)))
        return nan, int(np.count_nonzero(special)) - nan
    finite = np.isfinite(values)
    if finite.all():
        return 0, 0
    nan = int(np.count_nonzero(np.isnan(values)))
    return nan, int(values.size - np.count_nonzero(finite)) - nan


# -------------------------------------------------------------------------------------- wire format
_Entry = tuple[bytes, tuple[int, int]]  # a metadata entry: its key, and where its value lies in the file
_DIGEST_KEY = META_DIGEST.encode()
_FORMAT_KEY = META_FORMAT.encode()


@dataclass(frozen=True)
class _ModelParts:
    graph: tuple[int, int] | None
    metadata: list[_Entry]


def _model_parts(data: bytes) -> _ModelParts:
    graph, metadata = None, []
    for number, wire, a, b in _fields(data, 0, len(data)):
        if wire == 2 and number == _MODEL_GRAPH:
            graph = (a, b)
        elif wire == 2 and number == _MODEL_METADATA:
            metadata.append(_entry(data, a, b))
    if graph is None:
        raise _Malformed("no graph")
    return _ModelParts(graph, metadata)


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, a, b) for each field in data[start:end]: for length-delimited fields the
    payload's bounds, for varints (value, 0), for fixed-width fields their bounds."""
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Malformed("field 0")
        if wire == 0:
            value, pos = _varint(data, pos, end)
            yield number, wire, value, 0
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise _Malformed("length past the end")
            yield number, wire, pos, pos + length
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise _Malformed("fixed field past the end")
            yield number, wire, pos, pos + width
            pos += width
        else:
            raise _Malformed(f"wire type {wire}")


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


__all__ = ["DIGEST_SCHEME", "FileFacts", "digest_of", "examine", "file_digest", "seal", "sealed_bytes", "unseal"]
