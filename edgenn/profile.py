"""Why a model is slow: per node and per op type, from onnxruntime's profiler or OpenVINO's counters.

`profile_model` runs one model on one session configuration with the profiler on and gives the
median time of each node per run, classified (compute, layout reorder, quantize/dequantize, float
compute in a quantized model). `attribute` puts two profiles of one model side by side (fp32 and
its int8 form, at one batch on one provider) and says where the difference goes, node by node,
with the known causes named in one line each.

The profiler slows every node a little (it records each call), so these figures explain; the
latencies to quote come from edgenn.timing's harness, which bench runs without it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.fileio import scratch_folder
from edgenn.runtime.session import SessionConfig, open_session

PROFILE_RUNS = 30  # profiled runs per point (after the warm-up ones)
PROFILE_WARMUP = 5

REORDER_OPS = {"ReorderInput", "ReorderOutput", "Transpose"}
QUANTIZE_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
SHAPE_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Gather", "Concat", "Identity", "Cast"}
# The op families whose nodes are paired across two forms of one model (fp32 and int8, fused or not)
FAMILIES = {
    "Conv": ("Conv", "FusedConv", "QLinearConv", "ConvInteger", "NhwcConv", "NhwcFusedConv"),
    "Gemm": (
        "Gemm",
        "FusedGemm",
        "QGemm",
        "MatMul",
        "FusedMatMul",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "QLinearMatMul",
        "MatMulIntegerToFloat",
    ),
    "MaxPool": ("MaxPool", "NhwcMaxPool", "QLinearMaxPool"),
    "AveragePool": ("AveragePool", "QLinearAveragePool", "GlobalAveragePool", "QLinearGlobalAveragePool"),
    "Add": ("Add", "QLinearAdd"),
    "Mul": ("Mul", "QLinearMul"),
    "Relu": ("Relu",),
    "Sigmoid": ("Sigmoid", "QLinearSigmoid"),
    "Softmax": ("Softmax", "QLinearSoftmax"),
    "LSTM": ("LSTM", "DynamicQuantizeLSTM"),
    "GRU": ("GRU",),
    "ReduceMean": ("ReduceMean", "QLinearReduceMean"),
    "reorder": ("ReorderInput", "ReorderOutput", "Transpose"),
}
_FAMILY_OF = {op: family for family, ops in FAMILIES.items() for op in ops}
_INT8 = {"uint8", "int8"}
# Kernels that compute in int8 whatever their input types (the dynamic ones quantize their float input)
INT8_KERNELS = {
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "DynamicQuantizeLSTM",
    "QLinearAdd",
    "QLinearMul",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearSigmoid",
    "QLinearSoftmax",
    "QLinearReduceMean",
    "QLinearMaxPool",
}
FEW_CHANNELS = 4  # an int8 Conv with fewer input channels has too little work per output to gain


@dataclass(frozen=True)
class NodeTime:
    name: str  # as the profiler names the kernel (fused nodes get new names)
    op: str
    kind: str  # compute | reorder | quantize | float-in-int8 | shape
    ms: float  # median per run
    share: float  # of the run's node time
    input_types: tuple[str, ...]
    input_shape: tuple[int, ...]  # of the first input

    @property
    def family(self) -> str:
        return _FAMILY_OF.get(self.op, self.op)

    @property
    def int8(self) -> bool:
        return self.op in INT8_KERNELS or (bool(self.input_types) and self.input_types[0] in _INT8)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "kind": self.kind,
            "ms": round(self.ms, 5),
            "share": round(self.share, 4),
            "input_types": list(self.input_types),
            "input_shape": list(self.input_shape),
        }


@dataclass(frozen=True)
class Profile:
    model: str
    provider: str  # the session's label: cpu, openvino bf16, ...
    batch: int
    threads: int | None
    runs: int
    source: str  # "onnxruntime profiler" | "OpenVINO per-layer counters"
    nodes: tuple[NodeTime, ...]  # in execution order
    quantized: bool
    notes: tuple[str, ...] = ()

    @property
    def total_ms(self) -> float:
        return sum(n.ms for n in self.nodes)

    def by_op(self) -> list[tuple[str, int, float, float]]:
        """(op, nodes, ms per run, share), slowest first."""
        grouped: dict[str, list[NodeTime]] = {}
        for node in self.nodes:
            grouped.setdefault(node.op, []).append(node)
        total = self.total_ms or 1.0
        rows = [(op, len(ns), sum(n.ms for n in ns), sum(n.ms for n in ns) / total) for op, ns in grouped.items()]
        return sorted(rows, key=lambda r: -r[2])

    def shares(self) -> dict[str, float]:
        """The share of node time in layout reorders, in quantize/dequantize, and in float compute of a
        quantized model."""
        total = self.total_ms or 1.0
        kinds = ("reorder", "quantize", "float-in-int8")
        return {kind: sum(n.ms for n in self.nodes if n.kind == kind) / total for kind in kinds}

    def explanations(self) -> list[str]:
        """The known causes of slowness visible in this profile alone."""
        out = []
        shares = self.shares()
        for node in self.nodes:
            if node.family == "MaxPool" and node.int8 and node.share >= 0.05:
                out.append(
                    f"{node.name}: MaxPool in {node.input_types[0]} takes {percent(node.share)} of the run; "
                    "an 8-bit MaxPool can be far slower than the float one (bench the fp32 file beside it with "
                    "--profile: the attribution gives the ratio)"
                )
            channels = _channels(node)
            if node.family == "Conv" and node.int8 and channels is not None and channels < FEW_CHANNELS:
                out.append(
                    f"{node.name}: int8 Conv with {channels} input channel(s): too little work per output for "
                    f"int8 to pay; static recipes keep such convs float (--min-conv-channels {FEW_CHANNELS})"
                )
        if shares["quantize"] >= 0.1:
            out.append(
                f"quantize/dequantize take {percent(shares['quantize'])}: the conversions at the edges of the "
                "int8 regions, where a float op sits between int8 ones or at the model's inputs and outputs"
            )
        if shares["reorder"] >= 0.1:
            out.append(
                f"layout reorders take {percent(shares['reorder'])}: the kernels want another layout (NCHWc, "
                "NHWC) than their neighbours, and each change copies the tensor"
            )
        if self.quantized and shares["float-in-int8"] >= 0.1:
            ops = sorted({n.op for n in self.nodes if n.kind == "float-in-int8"})
            out.append(
                f"{percent(shares['float-in-int8'])} of the run is float compute in a quantized model "
                f"({', '.join(ops)}): ops left out of quantization, or with no int8 kernel here"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "batch": self.batch,
            "threads": self.threads,
            "runs": self.runs,
            "source": self.source,
            "total_ms": round(self.total_ms, 5),
            "quantized": self.quantized,
            "shares": {k: round(v, 4) for k, v in self.shares().items()},
            "by_op": [
                {"op": op, "nodes": n, "ms": round(ms, 5), "share": round(s, 4)} for op, n, ms, s in self.by_op()
            ],
            "nodes": [n.to_dict() for n in self.nodes],
            "explanations": self.explanations(),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Difference:
    """One row of an attribution: a pair of nodes (or what only one side has), and the time between them."""

    what: str
    baseline_ms: float
    candidate_ms: float
    explanation: str = ""

    @property
    def delta_ms(self) -> float:
        return self.candidate_ms - self.baseline_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "baseline_ms": round(self.baseline_ms, 5),
            "candidate_ms": round(self.candidate_ms, 5),
            "delta_ms": round(self.delta_ms, 5),
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Attribution:
    baseline: str
    candidate: str
    provider: str
    batch: int
    rows: tuple[Difference, ...]  # the largest differences first

    @property
    def delta_ms(self) -> float:
        return sum(r.delta_ms for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "provider": self.provider,
            "batch": self.batch,
            "delta_ms": round(self.delta_ms, 5),
            "rows": [r.to_dict() for r in self.rows],
        }


# ------------------------------------------------------------------------------------ profiling
def profile_model(
    path: str | Path,
    config: SessionConfig,
    feeds: Mapping[str, np.ndarray],
    runs: int = PROFILE_RUNS,
    warmup: int = PROFILE_WARMUP,
    label: str = "",
) -> Profile:
    """Profile `path` on `config` over `runs` calls (after `warmup`) on `feeds`."""
    path = Path(path)
    quantized = _is_quantized(path)
    batch = len(next(iter(feeds.values()))) if feeds else 0
    if config.provider == "openvino":
        counted = _openvino_counters(path, config, feeds, runs, warmup, label or path.name, batch, quantized)
        if counted is not None:
            return counted
    with scratch_folder("profile") as folder:
        runner = open_session(path, config, name=str(path), profile_prefix=Path(folder) / "profile")
        for _ in range(warmup + runs):
            runner.infer(feeds)
        trace = Path(runner.end_profiling())
        events = json.loads(trace.read_text())
        provider = config.label if config.provider != "auto" else runner.info.provider
    nodes = _node_times(events, warmup, quantized)
    notes = []
    if len(nodes) == 1 and "ExecutionProvider" in nodes[0].name:
        notes.append(
            f"{config.provider} compiles the whole model into one node, so onnxruntime's profiler sees one; "
            "its per-layer counters need the openvino package (pip install openvino)"
        )
    return Profile(
        label or path.name,
        provider,
        batch,
        config.threads,
        runs,
        "onnxruntime profiler",
        nodes,
        quantized,
        tuple(notes),
    )


def _node_times(events: Sequence[Mapping[str, Any]], warmup: int, quantized: bool) -> tuple[NodeTime, ...]:
    per_node: dict[str, list[float]] = {}
    about: dict[str, Mapping[str, Any]] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        node = name[: -len("_kernel_time")]
        per_node.setdefault(node, []).append(float(event.get("dur", 0.0)) / 1000.0)
        about.setdefault(node, event.get("args", {}))
    medians = {name: statistics.median(times[warmup:] or times) for name, times in per_node.items()}
    total = sum(medians.values()) or 1.0
    out = []
    for name, ms in medians.items():
        args = about[name]
        op = str(args.get("op_name", "?"))
        types, shape = _input_types(args.get("input_type_shape", []))
        out.append(NodeTime(name, op, _kind(op, types, quantized), ms, ms / total, types, shape))
    return tuple(out)


def _input_types(entries: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    types, first_shape = [], ()
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(entry, dict) and entry:
            dtype, shape = next(iter(entry.items()))
            types.append(str(dtype))
            if i == 0 and isinstance(shape, list):
                first_shape = tuple(int(d) for d in shape)
    return tuple(types), first_shape


def _kind(op: str, types: Sequence[str], quantized: bool) -> str:
    if op in REORDER_OPS:
        return "reorder"
    if op in QUANTIZE_OPS:
        return "quantize"
    if op in SHAPE_OPS:
        return "shape"
    if op in INT8_KERNELS:
        return "compute"
    if quantized and types and all(t in ("float", "float16", "double") for t in types[:1]) and _FAMILY_OF.get(op):
        return "float-in-int8"
    return "compute"


def _channels(node: NodeTime) -> int | None:
    shape = node.input_shape
    if len(shape) != 4:
        return None
    return shape[3] if node.op.startswith("Nhwc") else shape[1]


def _is_quantized(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    int8_ops = QUANTIZE_OPS | {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm"}
    return any(node.op_type in int8_ops for node in model.graph.node)


# OpenVINO's layer types and kernel precisions (exec_type "jit_avx2_I8", "brgconv_avx2_f32") in onnxruntime's terms
_OV_OPS = {
    "Convolution": "Conv",
    "FullyConnected": "Gemm",
    "FullyConnectedQuantizedLegacy": "Gemm",
    "FullyConnectedQuantized": "Gemm",
    "FakeQuantize": "QuantizeLinear",
    "Reorder": "ReorderInput",
    "Eltwise": "Add",
}
_OV_PRECISIONS = {"i8": "int8", "u8": "uint8", "f32": "float", "bf16": "bfloat16", "f16": "float16"}


def _openvino_counters(
    path: Path,
    config: SessionConfig,
    feeds: Mapping[str, np.ndarray],
    runs: int,
    warmup: int,
    label: str,
    batch: int,
    quantized: bool,
) -> Profile | None:
    """OpenVINO's own per-layer counters (PERF_COUNT), where the openvino package is installed: the
    provider compiles the model into one node that onnxruntime's profiler cannot see into."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    device = config.device or "CPU"
    properties = {"PERF_COUNT": "YES"}
    if config.precision in ("bf16", "f16"):
        properties["INFERENCE_PRECISION_HINT"] = config.precision
    if config.threads:
        properties["INFERENCE_NUM_THREADS"] = str(config.threads)
    compiled = core.compile_model(core.read_model(str(path)), device, properties)
    request = compiled.create_infer_request()
    per_layer: dict[str, list[float]] = {}
    kinds: dict[str, tuple[str, str]] = {}
    for i in range(warmup + runs):
        request.infer(dict(feeds))
        if i < warmup:
            continue
        for info in request.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            per_layer.setdefault(info.node_name, []).append(info.real_time.total_seconds() * 1000.0)
            kinds[info.node_name] = (info.node_type, info.exec_type)
    medians = {name: statistics.median(times) for name, times in per_layer.items()}
    total = sum(medians.values()) or 1.0
    nodes = []
    for name, ms in medians.items():
        node_type, exec_type = kinds[name]
        precision = _OV_PRECISIONS.get(exec_type.rsplit("_", 1)[-1].lower(), "float")
        op = _OV_OPS.get(node_type, node_type)
        nodes.append(NodeTime(name, op, _kind(op, (precision,), quantized), ms, ms / total, (precision,), ()))
    notes = ("OpenVINO's per-layer counters (PERF_COUNT) from its own runtime, compiled as the provider compiles it",)
    return Profile(
        label, config.label, batch, config.threads, runs, "OpenVINO per-layer counters", tuple(nodes), quantized, notes
    )


# ---------------------------------------------------------------------------------- attribution
def attribute(baseline: Profile, candidate: Profile) -> Attribution:
    """Where the time between two forms of one model goes: nodes of one op family paired in order
    (the k-th Conv of one with the k-th of the other, the k-th layout reorder with the k-th), and what
    only one side has (quantize/dequantize, extra nodes of a family) as rows of their own."""
    rows: list[Difference] = []
    pairs, extra_base, extra_cand = _pairs(baseline.nodes, candidate.nodes)
    for base, cand in pairs:
        rows.append(
            # baseline / candidate, in the order of the columns
            Difference(f"{base.name} ({base.op}) / {cand.name} ({cand.op})", base.ms, cand.ms, _why(base, cand))
        )
    for side, nodes in (("baseline", extra_base), ("candidate", extra_cand)):
        grouped: dict[str, list[NodeTime]] = {}
        for node in nodes:
            grouped.setdefault(node.op, []).append(node)
        for op, group in grouped.items():
            ms = sum(n.ms for n in group)
            what = f"{op} x{len(group)}, only in the {side}"
            why = ""
            if op in QUANTIZE_OPS and side == "candidate":
                why = "float <-> int8 conversions at the edges of the int8 regions"
            elif op in REORDER_OPS:
                why = "layout conversions between kernels that want different layouts"
            rows.append(Difference(what, ms if side == "baseline" else 0.0, ms if side == "candidate" else 0.0, why))
    rows.sort(key=lambda r: -abs(r.delta_ms))
    return Attribution(baseline.model, candidate.model, candidate.provider, candidate.batch, tuple(rows))


def _pairs(
    base: Sequence[NodeTime], cand: Sequence[NodeTime]
) -> tuple[list[tuple[NodeTime, NodeTime]], list[NodeTime], list[NodeTime]]:
    def families(nodes: Sequence[NodeTime]) -> dict[str, list[NodeTime]]:
        out: dict[str, list[NodeTime]] = {}
        for node in nodes:
            if node.op in QUANTIZE_OPS:  # conversions have no counterpart: rows of their own
                continue
            out.setdefault(node.family, []).append(node)
        return out

    fb, fc = families(base), families(cand)
    pairs, rest_b, rest_c = [], [], []
    for family in dict.fromkeys([*fb, *fc]):
        a, b = fb.get(family, []), fc.get(family, [])
        pairs += list(zip(a, b))
        rest_b += a[len(b) :]
        rest_c += b[len(a) :]
    rest_b += [n for n in base if n.op in QUANTIZE_OPS]
    rest_c += [n for n in cand if n.op in QUANTIZE_OPS]
    return pairs, rest_b, rest_c


def _why(base: NodeTime, cand: NodeTime) -> str:
    if base.ms <= 0 or cand.ms <= 0:  # below the timer's resolution: no ratio to speak of
        return ""
    ratio = cand.ms / base.ms
    if cand.family == "MaxPool" and cand.int8 and not base.int8 and ratio > 1.5 and cand.share >= 0.05:
        return (
            f"MaxPool in {cand.input_types[0]} takes {ratio:.1f}x its float time: the 8-bit MaxPool kernel is "
            "that much slower than the float one here"
        )
    channels = _channels(cand)
    if cand.family == "Conv" and cand.int8 and channels is not None and channels < FEW_CHANNELS and ratio > 1.0:
        return f"int8 Conv with {channels} input channel(s) ({ratio:.1f}x): too little work per output for int8 to pay"
    if cand.kind == "float-in-int8" and ratio > 1.2:
        return f"still float in the quantized model ({ratio:.1f}x): the layout or conversions around it cost more"
    if cand.int8 and ratio < 1.0:
        return f"int8 kernel, {1 / ratio:.1f}x faster"
    if cand.int8 and ratio > 1.2:
        return f"int8 kernel, {ratio:.1f}x slower than float here"
    return ""


def percent(share: float) -> str:
    return f"{100 * share:.0f}%"


__all__ = ["Attribution", "Difference", "NodeTime", "Profile", "attribute", "profile_model"]
