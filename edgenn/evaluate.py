"""What a quantized model cost and bought: accuracy on labelled data, output error, size, speed, kernels.

The fp32 model and its quantized version are measured in one run, side by side: predictions on the
same samples, latency interleaved round by round (medians), so that the machine's drift hits both.
The optimised graph onnxruntime really runs is read back to count the int8 (or fp16) kernels: a
QDQ model whose pairs were not fused runs in float, and only the optimised graph says so.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgenn import timing
from edgenn.calibration import Samples
from edgenn.errors import InputError
from edgenn.fileio import scratch_folder
from edgenn.parity import Tolerance, compare
from edgenn.runtime.session import OrtRunner, SessionConfig, open_session

# Kernels that compute in int8 (weights and activations), and the float ones they replace.
INT8_COMPUTE_OPS = frozenset(
    {
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
        "ConvInteger",
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "QAttention",
        "QLinearConvTranspose",
    }
)
FLOAT_COMPUTE_OPS = frozenset(
    {
        "Conv",
        "FusedConv",
        "ConvTranspose",
        "Gemm",
        "FusedGemm",
        "MatMul",
        "FusedMatMul",
        "LSTM",
        "GRU",
        "RNN",
        "Attention",
        "MultiHeadAttention",
    }
)
# Ops that only move or reshape data: they take whatever precision their neighbours have (so their
# running in fp32 says nothing about fp16 kernels), and keeping one in float recovers no accuracy.
DATA_MOVEMENT_OPS = frozenset(
    {
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Gather",
        "GatherElements",
        "Split",
        "Slice",
        "Pad",
        "Resize",
        "Concat",
        "Where",
        "TopK",
        "ArgMax",
        "CumSum",
        "Shape",
        "Expand",
        "Identity",
    }
)
EVAL_BATCH = 64


@dataclass(frozen=True)
class LatencyOptions:
    """How latency is measured (edgenn.timing's harness): per batch size, `rounds` rounds of `repeats`
    calls to each model on each provider, all interleaved in one run."""

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
class ProviderEvaluation:
    """Both models on one provider and precision: accuracy, latency and where they really ran."""

    provider: str  # the session configuration's label: cpu, openvino, openvino bf16, ...
    fp32_accuracy: float | None  # None without labels
    quantized_accuracy: float | None
    latency: tuple[Latency, ...]
    fp32_placement: str  # SessionInfo.summary: device, precision, nodes the provider took
    quantized_placement: str
    note: str = ""  # the provider left nodes to the CPU, or fell back

    @property
    def drop_points(self) -> float | None:
        if self.fp32_accuracy is None or self.quantized_accuracy is None:
            return None
        return 100.0 * (self.fp32_accuracy - self.quantized_accuracy)

    def speedup_at(self, batch_size: int) -> float | None:
        return next((lat.speedup for lat in self.latency if lat.batch_size == batch_size), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "fp32_accuracy": self.fp32_accuracy,
            "quantized_accuracy": self.quantized_accuracy,
            "drop_points": self.drop_points,
            "latency": [lat.to_dict() for lat in self.latency],
            "fp32_placement": self.fp32_placement,
            "quantized_placement": self.quantized_placement,
            "note": self.note,
        }


@dataclass(frozen=True)
class Evaluation:
    """fp32 against quantized on the same samples, in one run.

    The headline figures are on the first provider asked for (the CPU provider by default);
    `providers` holds every provider asked for, the first included, measured side by side.
    Accuracy needs labels (None without); the output error figures are always there: max abs
    error, output error (max abs error over max |fp32|, every output), SQNR in dB and cosine
    similarity (of all outputs together), and argmax agreement where the first output looks like
    class scores (None otherwise).
    """

    data: str
    samples: int
    fp32_accuracy: float | None
    quantized_accuracy: float | None
    argmax_agreement: float | None
    max_abs_error: float
    fp32_bytes: int
    quantized_bytes: int
    latency: tuple[Latency, ...]
    kernels: Kernels
    latency_options: LatencyOptions = field(default_factory=LatencyOptions)
    latency_note: str = ""
    providers: tuple[ProviderEvaluation, ...] = ()
    output_error: float = 0.0
    sqnr_db: float = float("inf")
    cosine: float = 1.0

    @property
    def labelled(self) -> bool:
        return self.fp32_accuracy is not None and self.quantized_accuracy is not None

    @property
    def drop_points(self) -> float | None:
        """Accuracy lost, in percentage points (negative: the quantized model did better); None without labels."""
        if self.fp32_accuracy is None or self.quantized_accuracy is None:
            return None
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
            "output_error": self.output_error,
            "sqnr_db": None if math.isinf(self.sqnr_db) else self.sqnr_db,
            "cosine": self.cosine,
            "fp32_bytes": self.fp32_bytes,
            "quantized_bytes": self.quantized_bytes,
            "size_ratio": self.size_ratio,
            "latency": [lat.to_dict() for lat in self.latency],
            "latency_options": self.latency_options.to_dict(),
            "latency_note": self.latency_note,
            "kernels": self.kernels.to_dict(),
            "providers": [p.to_dict() for p in self.providers],
        }


def evaluation_runner(
    path: str | os.PathLike[str] | bytes,
    threads: int = 1,
    optimized_path: str | None = None,
    optimize: bool = True,
    config: SessionConfig | None = None,
) -> OrtRunner:
    """A runner for evaluation: the CPU provider with `threads` unless `config` says otherwise."""
    config = config or SessionConfig(threads=threads or None)
    if not optimize:
        config = replace(config, graph_optimization="disable")
    name = "<bytes>" if isinstance(path, (bytes, bytearray)) else Path(path).name
    return open_session(path, config, name=name, optimized_path=optimized_path)


def predict(runner: OrtRunner, samples: Samples, fixed_batch: int | None = None) -> list[np.ndarray]:
    """All outputs over all samples, run EVAL_BATCH (or the model's fixed batch) at a time."""
    size = fixed_batch or EVAL_BATCH
    parts: list[list[np.ndarray]] = []
    for chunk in samples.chunks(size):
        n = len(next(iter(chunk.values())))
        if fixed_batch and n < fixed_batch:  # pad the last chunk of a fixed-batch model, then drop the padding
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], fixed_batch - n, axis=0)]) for k, v in chunk.items()}
        outputs = list(runner.infer(chunk).values())
        parts.append([o[:n] for o in outputs])
    return [np.concatenate(column) for column in zip(*parts)]


def accuracy(outputs: Sequence[np.ndarray], labels: np.ndarray) -> float:
    scores = outputs[0]
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise InputError(
            f"accuracy needs a classifier whose first output is (samples, classes); it has shape {scores.shape}"
        )
    return float(np.mean(scores.argmax(axis=1) == labels))


def compare_outputs(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> tuple[float | None, float]:
    """(argmax agreement, max abs error) of candidate against reference outputs (edgenn.parity); the
    agreement is None where the first output is not (samples, classes) scores."""
    names = [f"output_{i}" for i in range(len(reference))]
    report = compare(dict(zip(names, reference)), dict(zip(names, candidate)), Tolerance(), classifier=True)
    first = reference[0]
    scores = first.ndim == 2 and first.shape[1] > 1 and first.dtype.kind == "f"
    return (report.outputs[0].argmax_agreement if scores else None), report.max_abs_error


@dataclass(frozen=True)
class OutputError:
    """How far a candidate's outputs are from the reference's, where no labels say what is right."""

    max_abs_error: float
    relative: float  # max |candidate - reference| / max |reference|, worst output
    sqnr_db: float  # signal-to-quantization-noise ratio of all outputs together (inf: identical)
    cosine: float  # cosine similarity of all outputs together, flattened


def output_error(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> OutputError:
    worst_abs, worst_rel = 0.0, 0.0
    signal = noise = dot = norm_r = norm_c = 0.0
    for ref, got in zip(reference, candidate):
        r = np.asarray(ref, dtype=np.float64).ravel()
        c = np.asarray(got, dtype=np.float64).ravel()
        diff = np.abs(c - r)
        largest = float(diff.max()) if diff.size else 0.0
        worst_abs = max(worst_abs, largest)
        scale = float(np.abs(r).max()) if r.size else 0.0
        worst_rel = max(worst_rel, largest / scale if scale > 0 else (0.0 if largest == 0 else math.inf))
        signal += float(r @ r)
        noise += float(diff @ diff)
        dot += float(r @ c)
        norm_r += float(r @ r)
        norm_c += float(c @ c)
    sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    cosine = dot / math.sqrt(norm_r * norm_c) if norm_r > 0 and norm_c > 0 else float(norm_r == norm_c)
    return OutputError(worst_abs, worst_rel, sqnr, cosine)


def median_latencies(
    runners: Sequence[OrtRunner], samples: Samples, batch: int, options: LatencyOptions
) -> list[float]:
    """Median ms per call of each runner at `batch`, all timed side by side in edgenn.timing's harness."""
    feeds = samples.batch(batch)
    calls = [runner.prepared_call(feeds) for runner in runners]
    measured = timing.side_by_side(
        calls, options.warmup, options.rounds * options.repeats, seconds=0.0, rounds=options.rounds
    )
    return [1000.0 * measured.median_seconds(i) for i in range(len(calls))]


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

    with scratch_folder("kernels") as tmp:
        saved = os.path.join(tmp, "optimised.onnx")
        evaluation_runner(path, threads, optimized_path=saved)
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
    with scratch_folder("fp16") as tmp:
        saved = os.path.join(tmp, "placed.onnx")
        evaluation_runner(path, 1, optimized_path=saved, optimize=False)
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
            entry.value
            for tensor in model.graph.initializer
            if tensor.data_location == onnx.TensorProto.EXTERNAL
            for entry in tensor.external_data
            if entry.key == "location"
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
    sessions: Sequence[SessionConfig] = (),
) -> Evaluation:
    """Accuracy, output error, size, latency and kernels of quantized against fp32, on each provider in
    `sessions` (default: the CPU provider), every latency figure of one batch size measured side by side."""
    labels = samples.labels
    configs = evaluation_configs(sessions, options.threads)
    pairs = [(evaluation_runner(fp32_path, config=c), evaluation_runner(quantized_path, config=c)) for c in configs]
    outputs = [(predict(ref, samples, fixed_batch), predict(cand, samples, fixed_batch)) for ref, cand in pairs]
    ref_out, cand_out = outputs[0]
    agreement, max_abs = compare_outputs(ref_out, cand_out)
    error = output_error(ref_out, cand_out)
    batches, note = measured_batches(options, fixed_batch)
    per_batch = [median_latencies([r for pair in pairs for r in pair], samples, batch, options) for batch in batches]
    figures = tuple(
        ProviderEvaluation(
            provider=config.label,
            fp32_accuracy=None if labels is None else accuracy(outputs[i][0], labels),
            quantized_accuracy=None if labels is None else accuracy(outputs[i][1], labels),
            latency=tuple(Latency(b, times[2 * i], times[2 * i + 1]) for b, times in zip(batches, per_batch)),
            fp32_placement=pairs[i][0].info.summary,
            quantized_placement=pairs[i][1].info.summary,
            note="; ".join(dict.fromkeys(n for n in (pairs[i][0].info.note, pairs[i][1].info.note) if n)),
        )
        for i, config in enumerate(configs)
    )
    kernels = optimised_kernels(quantized_path, options.threads)
    if fp16:
        in_fp16, converted, missing = fp16_coverage(quantized_path)
        kernels = Kernels(kernels.op_counts, kernels.int8_compute, kernels.float_compute, in_fp16, converted, missing)
    return Evaluation(
        data=samples.source,
        samples=len(samples),
        fp32_accuracy=figures[0].fp32_accuracy,
        quantized_accuracy=figures[0].quantized_accuracy,
        argmax_agreement=agreement,
        max_abs_error=max_abs,
        fp32_bytes=file_bytes(fp32_path),
        quantized_bytes=file_bytes(quantized_path),
        latency=figures[0].latency,
        kernels=kernels,
        latency_options=options,
        latency_note=note,
        providers=figures,
        output_error=error.relative,
        sqnr_db=error.sqnr_db,
        cosine=error.cosine,
    )


def evaluation_configs(sessions: Sequence[SessionConfig], threads: int) -> tuple[SessionConfig, ...]:
    """The sessions to evaluate on, with the timing threads where they name none. The CPU provider may
    take the nodes another provider refuses (a quantized LSTM under OpenVINO): the figures say so."""
    configs = tuple(sessions) or (SessionConfig(),)
    return tuple(
        replace(c, threads=c.threads or threads or None, fallback=c.fallback or c.provider != "cpu") for c in configs
    )
