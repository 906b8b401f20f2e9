"""What a quantized model cost and bought: accuracy on labelled data, output error, size, speed, kernels.

The fp32 model and its quantized version are measured in one run, side by side: predictions on the
same samples, latency interleaved round by round (medians), so that the machine's drift hits both.
The optimised graph onnxruntime really runs is read back to count the int8 (or fp16) kernels: a
QDQ model whose pairs were not fused runs in float, and only the optimised graph says so.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.calibration import Samples
from edgenn.errors import InputError, ModelFileError
from edgenn.parity import Tolerance, compare

# Kernels that compute in int8 (weights and activations), and the float ones they replace.
INT8_COMPUTE_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "QAttention", "QLinearConvTranspose",
})
FLOAT_COMPUTE_OPS = frozenset({
    "Conv", "FusedConv", "ConvTranspose", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "LSTM", "GRU", "RNN",
    "Attention", "MultiHeadAttention",
})
# Ops that only move or reshape data: they take whatever precision their neighbours have (so their
# running in fp32 says nothing about fp16 kernels), and keeping one in float recovers no accuracy.
DATA_MOVEMENT_OPS = frozenset({
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Gather", "GatherElements", "Split", "Slice",
    "Pad", "Resize", "Concat", "Where", "TopK", "ArgMax", "CumSum", "Shape", "Expand", "Identity",
})
EVAL_BATCH = 64


@dataclass(frozen=True)
class LatencyOptions:
    """How latency is measured: per batch size, `rounds` rounds of `repeats` calls to each model, interleaved."""

    batch_sizes: tuple[int, ...] = (1, 64)
    rounds: int = 10
    repeats: int = 5
    warmup: int = 3
    threads: int = 1  # intra-op threads; 1 keeps the figures steady on a shared machine

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "batch_sizes": list(self.batch_sizes)}


@dataclass(frozen=True)
class Latency:
    batch_size: int
    fp32_ms: float
    quantized_ms: float

    @property
    def speedup(self) -> float:
        """fp32 time over quantized time: the quantized model's throughput ratio (>1: faster)."""
        return self.fp32_ms / self.quantized_ms if self.quantized_ms > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "fp32_ms": self.fp32_ms,
            "quantized_ms": self.quantized_ms,
            "fp32_samples_per_s": 1000 * self.batch_size / self.fp32_ms,
            "quantized_samples_per_s": 1000 * self.batch_size / self.quantized_ms,
            "speedup": self.speedup,
        }


@dataclass(frozen=True)
class Kernels:
    """The op types of the graph onnxruntime optimised and ran, and what they say about precision."""

    op_counts: tuple[tuple[str, int], ...]  # (op type, count), most frequent first
    int8_compute: int  # QLinearConv, QGemm, DynamicQuantizeMatMul, ... (see INT8_COMPUTE_OPS)
    float_compute: int  # Conv, Gemm, MatMul, LSTM, ... still in float
    fp16_nodes: int | None = None  # fp16 models: nodes that really compute in fp16
    fp16_candidates: int | None = None  # fp16 models: nodes the converter turned to fp16
    no_fp16_kernel: tuple[str, ...] = ()  # op types the CPU provider ran in fp32 through inserted casts

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["op_counts"] = dict(self.op_counts)
        data["no_fp16_kernel"] = list(self.no_fp16_kernel)
        return data


@dataclass(frozen=True)
class Evaluation:
    """fp32 against quantized on the same labelled samples, in one run."""

    data: str
    samples: int
    fp32_accuracy: float
    quantized_accuracy: float
    argmax_agreement: float
    max_abs_error: float
    fp32_bytes: int
    quantized_bytes: int
    latency: tuple[Latency, ...]
    kernels: Kernels
    latency_options: LatencyOptions = field(default_factory=LatencyOptions)
    latency_note: str = ""

    @property
    def drop_points(self) -> float:
        """Accuracy lost, in percentage points (negative: the quantized model did better)."""
        return 100.0 * (self.fp32_accuracy - self.quantized_accuracy)

    @property
    def size_ratio(self) -> float:
        return self.quantized_bytes / self.fp32_bytes

    def speedup_at(self, batch_size: int) -> float | None:
        return next((lat.speedup for lat in self.latency if lat.batch_size == batch_size), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "samples": self.samples,
            "fp32_accuracy": self.fp32_accuracy,
            "quantized_accuracy": self.quantized_accuracy,
            "drop_points": self.drop_points,
            "argmax_agreement": self.argmax_agreement,
            "max_abs_error": self.max_abs_error,
            "fp32_bytes": self.fp32_bytes,
            "quantized_bytes": self.quantized_bytes,
            "size_ratio": self.size_ratio,
            "latency": [lat.to_dict() for lat in self.latency],
            "latency_options": self.latency_options.to_dict(),
            "latency_note": self.latency_note,
            "kernels": self.kernels.to_dict(),
        }


def open_session(path: str | os.PathLike[str], threads: int = 1, optimized_path: str | None = None,
                 optimize: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for a model it cannot run
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"onnxruntime cannot run {str(path)!r}: {first}") from None


def predict(session: Any, samples: Samples, fixed_batch: int | None = None) -> list[np.ndarray]:
    """All outputs over all samples, run EVAL_BATCH (or the model's fixed batch) at a time."""
    size = fixed_batch or EVAL_BATCH
    parts: list[list[np.ndarray]] = []
    for chunk in samples.chunks(size):
        n = len(next(iter(chunk.values())))
        if fixed_batch and n < fixed_batch:  # pad the last chunk of a fixed-batch model, then drop the padding
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], fixed_batch - n, axis=0)]) for k, v in chunk.items()}
        outputs = session.run(None, chunk)
        parts.append([o[:n] for o in outputs])
    return [np.concatenate(column) for column in zip(*parts)]


def accuracy(outputs: Sequence[np.ndarray], labels: np.ndarray) -> float:
    scores = outputs[0]
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise InputError(
            f"accuracy needs a classifier whose first output is (samples, classes); it has shape {scores.shape}"
        )
    return float(np.mean(scores.argmax(axis=1) == labels))


def compare_outputs(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> tuple[float, float]:
    """(argmax agreement, max abs error) of candidate against reference outputs (edgenn.parity)."""
    names = [f"output_{i}" for i in range(len(reference))]
    report = compare(dict(zip(names, reference)), dict(zip(names, candidate)), Tolerance(), classifier=True)
    agreement = report.outputs[0].argmax_agreement
    return (1.0 if agreement is None else agreement), report.max_abs_error


def median_latencies(sessions: Sequence[Any], samples: Samples, batch: int, options: LatencyOptions) -> list[float]:
    """Median ms per call of each session at `batch`, measured round-robin so drift hits all alike."""
    feeds = samples.batch(batch)
    for session in sessions:
        for _ in range(options.warmup):
            session.run(None, feeds)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(options.rounds):
        for session, bucket in zip(sessions, times):
            for _ in range(options.repeats):
                started = time.perf_counter()
                session.run(None, feeds)
                bucket.append(time.perf_counter() - started)
    return [1000.0 * float(np.median(bucket)) for bucket in times]


def measured_batches(options: LatencyOptions, fixed_batch: int | None) -> tuple[tuple[int, ...], str]:
    if fixed_batch is None:
        return tuple(options.batch_sizes), ""
    skipped = [b for b in options.batch_sizes if b != fixed_batch]
    if not skipped:
        return (fixed_batch,), ""
    sizes = ", ".join(map(str, skipped))
    return (fixed_batch,), f"the model's batch dim is fixed at {fixed_batch}; batch {sizes} not measured"


def optimised_kernels(path: str | os.PathLike[str], threads: int = 1) -> Kernels:
    """Op counts of the graph onnxruntime runs after its optimisations (QDQ fusion included)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="edgenn-kernels-") as tmp:
        saved = os.path.join(tmp, "optimised.onnx")
        open_session(path, threads, optimized_path=saved)
        graph = onnx.load(saved, load_external_data=False).graph
    counts = Counter(node.op_type for node in graph.node)
    return Kernels(
        op_counts=tuple(counts.most_common()),
        int8_compute=sum(n for op, n in counts.items() if op in INT8_COMPUTE_OPS),
        float_compute=sum(n for op, n in counts.items() if op in FLOAT_COMPUTE_OPS),
    )


def fp16_coverage(path: str | os.PathLike[str]) -> tuple[int, int, tuple[str, ...]]:
    """(nodes computing in fp16, computing nodes the converter made fp16, op types with no fp16 CPU kernel).

    Where the CPU provider has no fp16 kernel for a node, onnxruntime quietly wraps it in Casts and
    runs it in fp32. The graph it saves before its other optimisations shows those casts; typing it
    with onnx shape inference tells, node by node, which precision really computes.
    """
    import onnx

    converted = _float_types(onnx.load(str(path)))
    with tempfile.TemporaryDirectory(prefix="edgenn-fp16-") as tmp:
        saved = os.path.join(tmp, "placed.onnx")
        open_session(path, 1, optimized_path=saved, optimize=False)
        placed = _float_types(onnx.load(saved))
    # data movement takes whatever precision its neighbours have: only the nodes that compute count
    candidates = {key for key, kind in converted.items() if kind == "fp16" and _op(key) not in DATA_MOVEMENT_OPS}
    in_fp16 = {key for key, kind in placed.items() if kind == "fp16"}
    fallback = sorted({_op(key) for key in candidates - in_fp16})
    return len(candidates & in_fp16), len(candidates), tuple(fallback)


def _op(key: str) -> str:
    return key.split("\x00", 1)[1]


def _float_types(model: Any) -> dict[str, str]:
    """node name -> 'fp16' | 'fp32' by the float type of its inputs (Casts and non-float nodes left out)."""
    import onnx

    typed = onnx.shape_inference.infer_shapes(model)
    values = (*typed.graph.value_info, *typed.graph.input, *typed.graph.output)
    elem = {v.name: v.type.tensor_type.elem_type for v in values}
    elem.update({t.name: t.data_type for t in typed.graph.initializer})
    kinds: dict[str, str] = {}
    for index, node in enumerate(typed.graph.node):
        if node.op_type == "Cast":
            continue
        types = {elem.get(name) for name in node.input if name}
        key = f"{node.name or index}\x00{node.op_type}"
        if onnx.TensorProto.FLOAT16 in types:
            kinds[key] = "fp16"
        elif onnx.TensorProto.FLOAT in types:
            kinds[key] = "fp32"
    return kinds


def file_bytes(path: str | os.PathLike[str]) -> int:
    """The model's size with its external data files, if it has any."""
    path = Path(path)
    total = path.stat().st_size
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        locations = {
            entry.value for tensor in model.graph.initializer if tensor.data_location == onnx.TensorProto.EXTERNAL
            for entry in tensor.external_data if entry.key == "location"
        }
        total += sum((path.parent / loc).stat().st_size for loc in locations if (path.parent / loc).is_file())
    except Exception:  # size of an unreadable model: the file itself; loading it reports the real problem
        pass
    return total


def evaluate(
    fp32_path: str | os.PathLike[str],
    quantized_path: str | os.PathLike[str],
    samples: Samples,
    options: LatencyOptions = LatencyOptions(),
    fixed_batch: int | None = None,
    fp16: bool = False,
) -> Evaluation:
    """Accuracy, output error, size, latency (interleaved) and kernels of quantized against fp32."""
    if samples.labels is None:
        raise InputError(f"evaluation data from {samples.source} has no labels")
    reference = open_session(fp32_path, options.threads)
    candidate = open_session(quantized_path, options.threads)
    ref_out = predict(reference, samples, fixed_batch)
    cand_out = predict(candidate, samples, fixed_batch)
    agreement, max_abs = compare_outputs(ref_out, cand_out)
    batches, note = measured_batches(options, fixed_batch)
    latency = []
    for batch in batches:
        fp32_ms, quantized_ms = median_latencies([reference, candidate], samples, batch, options)
        latency.append(Latency(batch, fp32_ms, quantized_ms))
    kernels = optimised_kernels(quantized_path, options.threads)
    if fp16:
        in_fp16, converted, missing = fp16_coverage(quantized_path)
        kernels = Kernels(kernels.op_counts, kernels.int8_compute, kernels.float_compute, in_fp16, converted, missing)
    return Evaluation(
        data=samples.source,
        samples=len(samples),
        fp32_accuracy=accuracy(ref_out, samples.labels),
        quantized_accuracy=accuracy(cand_out, samples.labels),
        argmax_agreement=agreement,
        max_abs_error=max_abs,
        fp32_bytes=file_bytes(fp32_path),
        quantized_bytes=file_bytes(quantized_path),
        latency=tuple(latency),
        kernels=kernels,
        latency_options=options,
        latency_note=note,
    )
