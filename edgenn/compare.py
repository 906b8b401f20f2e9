"""Two runs of one model side by side: eager PyTorch, or an ONNX file on a provider and precision.

`compare(a, b)` gives the per-output report (what export's validation gives, for any pair);
`compare(a, b, CompareOptions(layerwise=True))` adds the layer-by-layer walk of edgenn.layerwise.
A side is written as a model source (a zoo name, with weights; `file.py:factory`) or as
`model.onnx[@PROVIDER[:DEVICE][:PRECISION]]`. Both sides run on the same inputs: the user's `.npz`,
digits for the zoo's models, or seeded random data.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgenn import _callable_stage
from edgenn.errors import EdgennError, InputError
from edgenn.evaluate import OutputError, output_error
from edgenn.fileio import scratch_folder
from edgenn.parity import Tolerance, compare_output
from edgenn.specs import TensorSpec

# A prime no other dim of the zoo equals: a tensor another side holds transposed (a graph rewritten by
# quantize's pre-processing) then shows as a shape mismatch instead of lining up by chance
DEFAULT_BATCH = 7


@dataclass(frozen=True)
class CompareOptions:
    batch: int = DEFAULT_BATCH
    # per output: elementwise atol + rtol |x|; None: that (1e-4, 1e-3) for float32 on both sides, else the
    # error relative to each output's range within the layer tolerance of the sides' precisions
    tolerance: Tolerance | None = None
    layerwise: bool = False
    layer_tolerance: float | None = None  # relative to a layer's range; None: by the sides' precisions
    chunk: int = 64
    local: bool = True
    provider: str = "auto"  # for .onnx sides that name none
    data: str | None = None  # .npz, one array per input
    input_specs: tuple[TensorSpec, ...] = ()
    weights: str | None = None  # for a zoo side
    random_weights: bool = False
    seed: int = 0


@dataclass(frozen=True)
class OutputComparison:
    name: str
    shape: tuple[int, ...]
    error: OutputError
    max_elementwise_rel: float
    argmax_agreement: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "max_abs": self.error.max_abs_error,
            "max_rel": self.max_elementwise_rel,
            "relative_to_range": self.error.relative,
            "sqnr_db": _finite(self.error.sqnr_db),
            "cosine": self.error.cosine,
            "argmax_agreement": self.argmax_agreement,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class CompareReport:
    reference: str
    candidate: str
    inputs: str  # where the inputs came from
    batch: int
    tolerance: Tolerance | None  # None: outputs judged relative to their range (criterion says how)
    outputs: tuple[OutputComparison, ...]
    layerwise: Any = None  # edgenn.layerwise.LayerwiseReport
    notes: tuple[str, ...] = field(default_factory=tuple)
    criterion: str = ""  # what "within tolerance" means for the outputs, in words

    @property
    def passed(self) -> bool:
        outputs_hold = all(o.passed for o in self.outputs)
        return outputs_hold and (self.layerwise is None or self.layerwise.first_departure is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "inputs": self.inputs,
            "batch": self.batch,
            "tolerance": None if self.tolerance is None else {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol},
            "criterion": self.criterion,
            "passed": self.passed,
            "outputs": [o.to_dict() for o in self.outputs],
            "layerwise": None if self.layerwise is None else self.layerwise.to_dict(),
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------------ sides
@dataclass
class Side:
    """One side: a label for reports, its input and output names, and how to run it."""

    label: str
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]
    runner: Any  # a Runner (edgenn.specs)
    onnx_path: Path | None = None
    config: Any = None  # SessionConfig of an ONNX side
    module: Any = None  # the eager nn.Module
    preprocessing: Any = None
    dim_sizes: Mapping[str, int] = field(default_factory=dict)
    quantized: bool = False
    half: bool = False  # float16 weights in the file (quantize --mode fp16)
    zoo_source: str | None = None  # the zoo model it is (eager) or was exported from (edgenn metadata)

    @property
    def precision(self) -> str:
        """What the side computes in, as far as tolerances go: int8, f16 (the file's or the provider's), bf16, f32."""
        if self.quantized:
            return "int8"
        if self.half:
            return "f16"
        return "f32" if self.config is None else self.config.precision


def is_onnx_side(text: str) -> bool:
    return text.split("@", 1)[0].lower().endswith(".onnx")


def open_side(text: str, options: CompareOptions, other_inputs: tuple[TensorSpec, ...] = ()) -> Side:
    """`text` as a Side: `model.onnx[@PROVIDER...]`, or a model source run eagerly (taking `other_inputs`,
    the other side's, where neither its factory nor --input says what it takes)."""
    if is_onnx_side(text):
        return _onnx_side(text, options)
    try:
        return _eager_side(text, options, options.input_specs)
    except InputError:
        if options.input_specs or not other_inputs:
            raise
        return _eager_side(text, options, other_inputs)


def _onnx_side(text: str, options: CompareOptions) -> Side:
    import onnx

    from edgenn.calibration import read_preprocessing, stored_dim_sizes
    from edgenn.runtime.session import SessionConfig, open_session

    path_text, at, provider = text.partition("@")
    if at and not provider.strip():
        raise InputError(
            f"{text!r} names no provider after @: write {path_text}@cpu, @openvino:bf16, ... or drop the @"
        )
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"{path_text!r} not found: give an .onnx file (or a zoo name or file.py:factory for eager)")
    config = SessionConfig.parse(provider or options.provider)
    runner = open_session(path, config, name=str(path))
    proto = onnx.load(str(path), load_external_data=False)
    quantized = any(n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv") for n in proto.graph.node)
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    label = f"{path.name}@{runner.info.provider}" + ("" if config.precision == "f32" else f":{config.precision}")
    if config.provider == "auto":
        config = SessionConfig.parse(runner.info.provider)
    return Side(
        label,
        runner.inputs,
        tuple(o.name for o in runner.outputs),
        runner,
        onnx_path=path,
        config=config,
        preprocessing=read_preprocessing(proto),
        dim_sizes=stored_dim_sizes(proto),
        quantized=quantized,
        half=half,
        zoo_source=_zoo_name(runner.metadata.get("edgenn.source")),
    )


def _eager_side(text: str, options: CompareOptions, input_specs: tuple[TensorSpec, ...]) -> Side:
    from edgenn.export import structured_output_names
    from edgenn.runners import TorchRunner
    from edgenn.sources import load_source

    loaded = load_source(text, options.weights, input_specs, random_weights=options.random_weights)
    examples = loaded.example_inputs(1, seed=options.seed)
    import torch

    with torch.no_grad():
        raw = loaded.module(*examples)
    names = tuple(structured_output_names(raw))
    runner = TorchRunner(loaded.module, loaded.input_specs, names, name=f"eager {loaded.name}")
    return Side(
        f"eager {loaded.name}",
        loaded.input_specs,
        names,
        runner,
        module=loaded.module,
        preprocessing=loaded.preprocessing,
        dim_sizes=loaded._user_dim_sizes(),
        zoo_source=loaded.zoo_name,
    )


def _zoo_name(source: str | None) -> str | None:
    """A zoo model's name, where `source` is one (a file.py:factory or module:attr source is not)."""
    from edgenn import zoo

    return source if source in zoo.names() else None


def check_pair(a: Side, b: Side) -> None:
    """Both sides must be forms of one model: the same zoo model where both say which, the same inputs,
    as many outputs."""
    if a.zoo_source and b.zoo_source and a.zoo_source != b.zoo_source:
        raise InputError(
            f"{a.label} is the zoo's {a.zoo_source} and {b.label} its {b.zoo_source}: compare two forms of one model"
        )
    names_a, names_b = [s.name for s in a.inputs], [s.name for s in b.inputs]
    if len(names_a) != len(names_b) or (names_a != names_b and len(names_a) > 1):
        raise InputError(
            f"the sides take different inputs: {a.label} takes {', '.join(names_a)}, {b.label} takes "
            f"{', '.join(names_b)}; compare two forms of one model"
        )
    for spec_a, spec_b in zip(a.inputs, b.inputs):
        fixed = [
            (x, y) for x, y in zip(spec_a.shape[1:], spec_b.shape[1:]) if isinstance(x, int) and isinstance(y, int)
        ]
        if len(spec_a.shape) != len(spec_b.shape) or any(x != y for x, y in fixed) or spec_a.dtype != spec_b.dtype:
            raise InputError(f"input {spec_a.name!r} differs: {spec_a} on {a.label}, {spec_b} on {b.label}")
    if len(a.output_names) != len(b.output_names):
        raise InputError(
            f"the sides give different outputs: {a.label} gives {', '.join(a.output_names)}, {b.label} gives "
            f"{', '.join(b.output_names)}"
        )


def comparison_inputs(a: Side, b: Side, options: CompareOptions) -> tuple[dict[str, np.ndarray], str]:
    """The batch both sides run on: the user's .npz, digits where a side is a digits model, else random."""
    from edgenn.calibration import model_inputs, take

    samples = model_inputs(
        a.inputs,
        a.preprocessing or b.preprocessing,
        {**b.dim_sizes, **a.dim_sizes},
        options.data,
        options.input_specs,
        options.seed,
        options.batch,
        "--data",
    )
    source = samples.source
    if len(samples) > options.batch:
        samples = take(samples, options.batch, "--data", seed=options.seed)
        source = samples.source
    elif len(samples) < options.batch:
        source = f"{source}: all {len(samples)}, fewer than --batch {options.batch}"
    return {k: np.ascontiguousarray(v) for k, v in samples.feeds.items()}, source


def compare(a: str, b: str, options: CompareOptions = CompareOptions(), on_step: Callable[[str], None] | None = None):
    """Compare side `a` (the reference) with side `b` on the same inputs; see the module docstring."""
    step = on_step or (lambda _text: None)
    if options.batch < 1:
        raise EdgennError("--batch must be at least 1")
    # ONNX sides first: an eager side whose factory gives no example inputs takes theirs
    opened: dict[str, Side] = {}
    for text in sorted((a, b), key=lambda t: not is_onnx_side(t)):
        if text in opened:
            continue
        step(f"opening {text}")
        known = next((side.inputs for side in opened.values() if side.onnx_path is not None), ())
        opened[text] = open_side(text, options, known)
    ref, cand = opened[a], opened[b] if b != a else copy.copy(opened[a])
    check_pair(ref, cand)
    feeds, source = comparison_inputs(ref, cand, options)
    step("running both sides")
    out_ref = ref.runner.infer(feeds)
    out_cand = cand.runner.infer(renamed(feeds, cand))
    notes: list[str] = []
    if [s.name for s in ref.inputs] != [s.name for s in cand.inputs]:
        notes.append(f"one input, named {ref.inputs[0].name!r} and {cand.inputs[0].name!r}: matched by position")
    classifier = bool(ref.preprocessing or cand.preprocessing)
    tolerance, bound = options.tolerance, None
    if tolerance is None and {ref.precision, cand.precision} == {"f32"}:
        tolerance = Tolerance()
    if tolerance is None:
        bound = default_layer_tolerance(ref, cand)
        criterion = f"max |error| within {bound:g} of each output's range ({cand.precision} against {ref.precision})"
    else:
        criterion = f"|error| <= {tolerance.atol:g} + {tolerance.rtol:g} |reference|, every element"
    outputs = []
    for name_ref, name_cand in zip(ref.output_names, cand.output_names):
        x, y = np.asarray(out_ref[name_ref]), np.asarray(out_cand[name_cand])
        if x.shape != y.shape:
            raise InputError(
                f"output {name_ref!r} has shape {list(x.shape)} on {ref.label}, {list(y.shape)} on {cand.label}"
            )
        parity = compare_output(name_ref, x, y, tolerance or Tolerance(), classifier or _scores(x))
        error = output_error([x], [y])
        passed = parity.passed if bound is None else error.relative <= bound
        outputs.append(
            OutputComparison(name_ref, tuple(x.shape), error, parity.max_rel_error, parity.argmax_agreement, passed)
        )
    layerwise = None
    if options.layerwise:
        # the walk opens a session per chunk, one side at a time: the whole-model sessions go first, so that
        # one session's memory is held at a time, not three
        ref.runner = cand.runner = None
        del out_ref, out_cand
        gc.collect()
        layerwise = _layerwise(ref, cand, feeds, options, step)
    return CompareReport(
        ref.label,
        cand.label,
        source,
        len(next(iter(feeds.values()))),
        tolerance,
        tuple(outputs),
        layerwise,
        tuple(notes),
        criterion,
    )


def renamed(feeds: Mapping[str, np.ndarray], side: Side) -> dict[str, np.ndarray]:
    """The feeds (named as the reference names its inputs) under `side`'s own input names, by position."""
    return {spec.name: value for spec, value in zip(side.inputs, feeds.values())}


def default_layer_tolerance(a: Side, b: Side) -> float:
    """How far a layer may be from the reference, relative to its range, before it departs: float32 on both
    sides agrees to rounding; bf16/f16 to about 1%; int8 to a few percent per layer."""
    precisions = {a.precision, b.precision}
    if "int8" in precisions:
        return 0.1
    if precisions & {"bf16", "f16"}:
        return 0.03
    return 1e-3


def _layerwise(
    ref: Side, cand: Side, feeds: Mapping[str, np.ndarray], options: CompareOptions, step: Callable[[str], None]
):
    from edgenn import layerwise

    tolerance = options.layer_tolerance if options.layer_tolerance is not None else default_layer_tolerance(ref, cand)
    with _scratch() as scratch:
        sides = []
        for i, side in enumerate((ref, cand)):
            if side.onnx_path is not None:
                folder = scratch / f"side{i}"
                folder.mkdir()
                step(f"reading {side.label} as onnxruntime deploys it")
                sides.append(layerwise.OnnxSide(side.onnx_path, side.config, side.label, folder, list(feeds)))
            else:
                sides.append(layerwise.EagerSide(side.module, list(feeds), side.label))
        return layerwise.compare_layers(
            sides[0],
            sides[1],
            feeds,
            tolerance,
            chunk=options.chunk,
            local=options.local,
            on_chunk=lambda i, n: step(f"layers: chunk {i} of {n}"),
        )


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with scratch_folder("compare") as folder:
        yield folder


def _scores(array: np.ndarray) -> bool:
    return array.ndim == 2 and array.shape[1] > 1 and array.dtype.kind == "f"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_layer_plot(report: Any, path: str | Path) -> None:
    """Error by layer (relative to each layer's range, log scale): carried and local, and the tolerance."""
    from edgenn.bench import require_matplotlib
    from edgenn.fileio import atomic_path

    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-9  # a zero error still shows, at the bottom of the log scale
    xs = [layer.index for layer in report.layers if layer.carried is not None]
    carried = [max(layer.carried.relative, floor) for layer in report.layers if layer.carried is not None]
    local = [
        max(layer.local.relative, floor) if layer.local else float("nan") for layer in report.layers if layer.carried
    ]
    names = [(layer.module or layer.tensor) or "(top)" for layer in report.layers if layer.carried is not None]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(xs)), 4.5))
    ax.plot(xs, carried, marker="o", label="carried (same inputs)")
    if report.local_known:
        ax.plot(xs, local, marker="s", label="local (reference's inputs)")
    ax.axhline(report.tolerance, color="red", linestyle="--", linewidth=1, label=f"tolerance {report.tolerance:g}")
    first = report.first_departure
    if first is not None:
        ax.axvline(
            first.index, color="red", alpha=0.3, linewidth=6, label=f"first departs: {names[xs.index(first.index)]}"
        )
    ax.set_yscale("log")
    ax.set_xticks(xs, names, rotation=70, fontsize="x-small", ha="right")
    ax.set_ylabel("max |error| / max |reference|")
    ax.set_title(f"{report.candidate} against {report.reference}", fontsize="small")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


_callable_stage(__name__)  # `edgenn.compare(...)` works even after `import edgenn.compare`

__all__ = ["CompareOptions", "CompareReport", "OutputComparison", "compare", "open_side"]
