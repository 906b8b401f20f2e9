"""Triton's model configuration, written and read with Triton's own protobuf schema.

    config = model_config(name, inputs, outputs, max_batch_size=64, threads=1)
    text = config_text(config)            # what goes in config.pbtxt
    parsed = parse_config(text)           # ModelConfig, or one line naming what does not parse
    problems = check_config(parsed, inputs, outputs)

The schema is `model_config.proto` as `tritonclient` ships it (`tritonclient/grpc/model_config_pb2.py`),
parsed with protobuf's text format, so a field Triton does not know, a wrong enum or a bad value
fails here as it would in the server. The generated module is loaded from its file: importing it
as `tritonclient.grpc.model_config_pb2` would run `tritonclient.grpc`'s `__init__`, which needs
grpcio, a client edgenn does not use. protobuf comes with onnxruntime; tritonclient is 100 KB.

With `max_batch_size > 0` Triton's onnxruntime backend wants every input and output to have a
dynamic first dim, and `dims` without it (sharp-edges.md): `check_config` says where that fails.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from edgenn.errors import EdgennError
from edgenn.specs import TensorSpec

PLATFORM = "onnxruntime_onnx"
CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"

# numpy dtype name -> Triton's DataType (model_config.proto)
DATA_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}

# edgenn's graph optimisation level -> the backend's `optimization { graph { level } }` (unset: all).
# The backend maps -1 to ORT_DISABLE_ALL, 1 to ORT_ENABLE_EXTENDED and anything else to ORT_ENABLE_ALL;
# basic and layout have no value of their own.
GRAPH_LEVELS = {"all": None, "extended": 1, "disable": -1}


class TritonConfigError(EdgennError):
    """A config.pbtxt that does not parse, or does not fit the model beside it."""


@lru_cache(maxsize=1)
def schema() -> ModuleType:
    """tritonclient's generated model_config_pb2, loaded from its file."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise EdgennError(
            "reading a Triton config needs Triton's model_config schema: pip install tritonclient "
            "(100 KB, no grpc needed)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        raise EdgennError(f"tritonclient is installed without {path.name}; reinstall it: pip install tritonclient")
    loader_spec = importlib.util.spec_from_file_location("edgenn_triton_model_config_pb2", path)
    assert loader_spec is not None and loader_spec.loader is not None
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # a protobuf runtime the generated code refuses
        raise EdgennError(f"cannot load Triton's model_config schema from {path}: {exc}") from None
    return module


def model_config(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int,
    instances: int = 1,
    threads: int | None = None,
    max_queue_delay_us: int = 100,
    preferred_batch_sizes: Sequence[int] = (),
    labels: bool = False,
    accelerator: str | None = None,
    graph_level: int | None = None,
    gpu: bool = False,
) -> Any:
    """The ModelConfig message for an ONNX model served by the onnxruntime backend.

    With `max_batch_size > 0`, dims leave out the batch dim and requests are batched dynamically;
    0 serves the model's own shapes with no batching. `accelerator` is "openvino" (CPU) or
    "tensorrt" (GPU); `labels` names labels.txt on the first output (Triton's classification extension).
    """
    pb = schema()
    config = pb.ModelConfig(name=name, platform=PLATFORM, max_batch_size=max_batch_size)
    for spec, message in [(s, config.input.add()) for s in inputs] + [(s, config.output.add()) for s in outputs]:
        message.name = spec.name
        message.data_type = pb.DataType.Value(DATA_TYPES[spec.dtype])
        dims = _triton_dims(spec, max_batch_size > 0)
        message.dims.extend(dims)
        if max_batch_size > 0 and len(spec.shape) == 1:
            # one value per sample: Triton wants dims [1], reshaped to the model's scalar per row
            message.reshape.SetInParent()
    if labels and outputs:
        config.output[0].label_filename = LABELS_FILE
    if max_batch_size > 0:
        config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
        config.dynamic_batching.preferred_batch_size.extend(b for b in preferred_batch_sizes if 1 < b <= max_batch_size)
    group = config.instance_group.add()
    group.count = instances
    group.kind = pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU
    if threads is not None:
        # onnxruntime's own thread pools, per instance; without them each instance takes every core
        config.parameters["intra_op_thread_count"].string_value = str(threads)
        config.parameters["inter_op_thread_count"].string_value = "1"
    if graph_level is not None:
        config.optimization.graph.level = graph_level
    if accelerator == "openvino":
        config.optimization.execution_accelerators.cpu_execution_accelerator.add(name="openvino")
    elif accelerator == "tensorrt":
        config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    return config


def config_text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config(text: str, where: str = CONFIG_FILE) -> Any:
    """The ModelConfig in `text`; TritonConfigError with protobuf's reason where it does not parse."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, schema().ModelConfig())
    except text_format.ParseError as exc:
        raise TritonConfigError(f"{where} does not parse as a Triton model config: {exc}") from None


def check_config(config: Any, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> list[str]:
    """Where `config` does not fit a model with these inputs and outputs (empty: it fits)."""
    pb = schema()
    problems = []
    if config.platform != PLATFORM and config.backend != "onnxruntime":
        problems.append(f"platform is {config.platform!r}, not {PLATFORM!r}")
    batching = config.max_batch_size > 0
    for kind, declared, specs in (("input", config.input, inputs), ("output", config.output, outputs)):
        by_name = {spec.name: spec for spec in specs}
        names = [d.name for d in declared]
        if sorted(names) != sorted(by_name):
            problems.append(f"{kind}s are {names}, the model's are {sorted(by_name)}")
            continue
        for entry in declared:
            spec = by_name[entry.name]
            dtype = pb.DataType.Name(entry.data_type)
            if DATA_TYPES.get(spec.dtype) != dtype:
                problems.append(f"{kind} {entry.name!r} is {dtype}, the model's is {spec.dtype}")
            if batching and (not spec.shape or isinstance(spec.shape[0], int)):
                problems.append(
                    f"max_batch_size is {config.max_batch_size} but {kind} {entry.name!r} has no dynamic first dim "
                    f"({_shape(spec.shape)})"
                )
                continue
            expected = _triton_dims(spec, batching)
            if list(entry.dims) != expected:
                problems.append(f"{kind} {entry.name!r} has dims {list(entry.dims)}, the model's are {expected}")
            elif batching and len(spec.shape) == 1 and not (entry.HasField("reshape") and not entry.reshape.shape):
                problems.append(f"{kind} {entry.name!r} is one value per sample: it needs dims [1] and reshape {{}}")
    return problems


def _triton_dims(spec: TensorSpec, batching: bool) -> list[int]:
    """`dims` as Triton writes them: without the batch dim when batching ([1] for one value per sample),
    -1 for a dynamic dim."""
    dims = spec.shape[1:] if batching else spec.shape
    return [d if isinstance(d, int) else -1 for d in dims] or ([1] if batching else [])


def batch_problem(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str | None:
    """Why the model cannot be batched by Triton: every input and output needs the same dynamic first dim,
    the batch (Triton stacks requests along it)."""
    batch = inputs[0].shape[0] if inputs and inputs[0].shape else None
    for kind, specs in (("input", inputs), ("output", outputs)):
        for spec in specs:
            if not spec.shape or isinstance(spec.shape[0], int):
                return f"{kind} {spec.name!r} is {_shape(spec.shape)}: its first dim is not a dynamic batch"
            if spec.shape[0] != batch:
                return f"{kind} {spec.name!r} is {_shape(spec.shape)}: its first dim is not the batch dim {batch!r}"
    return None


def config_threads(config: Any) -> int | None:
    """The intra-op thread count a config sets (None: onnxruntime's default)."""
    value = config.parameters.get("intra_op_thread_count")
    if value is None or not value.string_value.strip():
        return None
    try:
        threads = int(value.string_value)
    except ValueError:
        raise TritonConfigError(
            f"{CONFIG_FILE}: intra_op_thread_count is {value.string_value!r}, not a whole number"
        ) from None
    return threads if threads > 0 else None


def _shape(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")" if shape else "a scalar"
