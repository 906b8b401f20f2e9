"""What is in an ONNX file, without running it: `edgenn inspect` (in the manner of `polygraphy inspect model`).

Inputs and outputs with their symbolic dims, opsets, producer, edgenn's metadata, an op histogram,
parameter count and bytes, initializers kept in external data, and whether onnxruntime loads it on
each provider present (a session is created per provider; nothing is run).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgenn.errors import EdgennError, ModelFileError, first_line
from edgenn.specs import META_PREFIX, TensorSpec


@dataclass(frozen=True)
class ProviderLoad:
    provider: str
    loads: bool
    detail: str  # where it ran ("12 of 12 nodes"), or why it did not load

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "loads": self.loads, "detail": self.detail}


@dataclass(frozen=True)
class Inspection:
    path: str
    file_bytes: int
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    nodes: int
    op_counts: tuple[tuple[str, int], ...]  # most frequent first
    parameters: int
    parameter_bytes: int
    external_data: tuple[str, ...]  # initializers stored outside the file
    metadata: dict[str, Any]  # edgenn's keys, JSON values parsed
    other_metadata: dict[str, str]
    providers: tuple[ProviderLoad, ...] = field(default=())
    integrity: str = ""  # what the load-time check says of the file: its digest, or why it refuses it

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "file_bytes": self.file_bytes,
            "ir_version": self.ir_version,
            "opsets": self.opsets,
            "producer": self.producer,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "nodes": self.nodes,
            "op_counts": dict(self.op_counts),
            "parameters": self.parameters,
            "parameter_bytes": self.parameter_bytes,
            "external_data": list(self.external_data),
            "metadata": self.metadata,
            "other_metadata": self.other_metadata,
            "providers": [p.to_dict() for p in self.providers],
            "integrity": self.integrity,
        }


def inspect_model(path: str | os.PathLike[str], load_check: bool = True) -> Inspection:
    """Read `path` (weights in external data are counted, not loaded) and try it on every provider present."""
    import numpy as np
    import onnx

    file = Path(path)
    if not file.is_file():
        raise ModelFileError(f"model file {str(path)!r} not found")
    try:
        model = onnx.load(str(file), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelFileError(f"{str(path)!r} is not an ONNX model or is corrupt ({first_line(exc)})") from None
    if not model.HasField("graph"):
        raise ModelFileError(f"{str(path)!r} is not an ONNX model (it has no graph)")
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = tuple(_spec(v) for v in graph.input if v.name not in initializers)
    outputs = tuple(_spec(v) for v in graph.output)
    counts = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in graph.node)
    parameters = 0
    parameter_bytes = 0
    external = []
    for tensor in graph.initializer:
        size = int(np.prod(tensor.dims)) if tensor.dims else 1
        parameters += size
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        parameter_bytes += size * itemsize
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            external.append(tensor.name)
    props = {p.key: p.value for p in model.metadata_props}
    ours = {k: _parsed(v) for k, v in props.items() if k.startswith(META_PREFIX)}
    others = {k: v for k, v in props.items() if not k.startswith(META_PREFIX)}
    return Inspection(
        path=str(file),
        file_bytes=file.stat().st_size,
        ir_version=model.ir_version,
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=inputs,
        outputs=outputs,
        nodes=len(graph.node),
        op_counts=tuple(counts.most_common()),
        parameters=parameters,
        parameter_bytes=parameter_bytes,
        external_data=tuple(external),
        metadata=ours,
        other_metadata=others,
        providers=_load_checks(file) if load_check else (),
        integrity=_integrity(file),
    )


def _integrity(file: Path) -> str:
    """The digest check and fault scan every load runs (edgenn.runtime.integrity), in words."""
    from edgenn.runtime.integrity import examine

    try:
        facts = examine(file.read_bytes(), file.name)
    except ModelFileError as exc:
        return f"REFUSED: {exc}"
    if facts is None:
        return "not read (not an ONNX protobuf edgenn's scan reads: onnxruntime decides)"
    if facts.digest:
        return f"digest {facts.digest} matches"
    return (
        "; ".join(("no edgenn digest; scanned", *facts.warnings))
        if facts.warnings
        else "no edgenn digest; scanned: no fault"
    )


def _spec(value: Any) -> TensorSpec:
    import onnx

    dims = tuple(
        d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in value.type.tensor_type.shape.dim
    )
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name
        return TensorSpec(value.name, dims, dtype)
    except Exception:  # a type edgenn's specs do not cover (string, bfloat16): shown as float32's neighbour
        return TensorSpec(value.name, dims, "float32")


def _parsed(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _load_checks(file: Path) -> tuple[ProviderLoad, ...]:
    """A session on each provider present (the CPU provider always); nothing is run."""
    from edgenn.runtime.providers import survey
    from edgenn.runtime.session import SessionConfig, open_session

    checks = []
    for status in survey():
        if status.reason:
            continue
        for device in status.devices[:1]:
            config = SessionConfig(provider=status.spec.name, device=None if status.spec.name == "cpu" else device.name)
            try:
                runner = open_session(file, config, name=file.name)
            except EdgennError as exc:
                checks.append(ProviderLoad(config.label, False, str(exc)))
                continue
            checks.append(ProviderLoad(config.label, True, runner.info.summary))
    return tuple(checks)
