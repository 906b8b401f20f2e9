"""Quantization recipes -> a quantized .onnx, and what it cost on held-out data.

    result = quantize("lenet5.onnx", "lenet5.int8.onnx", QuantizeOptions(mode="static"))
    result.evaluation.drop_points, result.evaluation.size_ratio, result.evaluation.speedup_at(64)

Recipes use onnxruntime's quantization tools after its recommended pre-processing (shape
inference, graph optimisations), in a temporary folder. What measuring on this machine (AVX-512
VNNI, onnxruntime 1.32; tools/quantize_zoo.py) taught, and the recipes follow:

- static int8 is QDQ with uint8 activations and int8 weights: the pairs then fuse into QLinearConv;
- static: the output layer (the last Gemm/MatMul) stays float: int8 there adds logit error for no speed;
- convolutions with fewer than 4 input channels (a grey-scale or RGB stem) run 2.3-4x *slower* in
  int8 than in float (one conv at batch 64, int8 throughput over fp32: 1 channel 0.24x, 2: 0.35x,
  3: 0.43x), so they stay float; from 4 to 7 channels int8 is about even (0.7-1.2x, quantized for
  size), from 8 channels on it wins (1.5-2.7x);
- dynamic int8 turns convolutions into ConvInteger, 6-8x slower than float here: they stay float;
- fp16 keeps float32 inputs and outputs; where the CPU provider has no fp16 kernel onnxruntime runs
  the node in fp32 behind casts, and the report names those ops.

Every result is measured against the fp32 model on labelled data (the digits test split, or the
user's .npz); auto mode chooses on the digits validation split and reports on the test split.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgenn import _callable_stage, calibration, recipes
from edgenn.calibration import Samples
from edgenn.errors import EdgennError, InputError, ModelFileError, ProviderError, first_line
from edgenn.evaluate import (
    DATA_MOVEMENT_OPS,
    Evaluation,
    LatencyOptions,
    accuracy,
    evaluate,
    evaluation_configs,
    evaluation_runner,
    measured_batches,
    median_latencies,
    optimised_kernels,
    output_error,
    predict,
)
from edgenn.fileio import atomic_path, scratch_folder
from edgenn.quiet import silenced
from edgenn.recipes import BuildContext, Recipe
from edgenn.runtime.integrity import examine, file_digest, sealed_bytes, unseal
from edgenn.runtime.session import SessionConfig
from edgenn.runtime.session import unavailable as session_unavailable
from edgenn.specs import (
    META_ACCURACY,
    META_PREFIX,
    META_SOURCE_DIGEST,
    META_VALIDATION,
    NODE_MODULE,
    TensorSpec,
    fixed_batch,
)
from edgenn.versions import edgenn_version, library_version

MODES = (*recipes.MODES, "auto")
FORMATS = recipes.FORMATS
METHODS = recipes.METHODS
META_QUANTIZATION = "edgenn.quantization"

# Nodes whose presence means the model was quantized (or converted to fp16) already.
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "ConvInteger",
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "QGemm",
        "QAttention",
    }
)
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN", "Attention")
MIN_INT8_CONV_CHANNELS = 4  # see the module docstring: below this, an int8 conv is 2.3-4x slower than float here
SLOWER_THAN_FP32 = 0.95  # a throughput ratio below this is slower beyond the noise of a shared machine
FASTER_THAN_FP32 = 1.05  # and above this, faster
SMALLER_THAN_FP32 = 0.9  # a size ratio below this is smaller once the evaluation record is in the file
# auto mode writes one file, which must run fast as it is: the recipes that need session options are tune's
AUTO_RECIPES = recipes.file_only()
# What auto mode writes when no recipe within the budget is faster than fp32 or smaller: fp32 itself.
KEPT_FP32 = Recipe("fp32", registered_name="fp32", summary="no recipe was faster or smaller than fp32: fp32, unchanged")


@dataclass(frozen=True)
class QuantizeOptions:
    mode: str = "static"  # dynamic | static | fp16 | auto
    format: str = "qdq"  # static: qdq | qoperator
    per_channel: bool = True  # static and dynamic weights: one scale per output channel
    method: str = "minmax"  # static calibration: minmax | entropy | percentile
    samples: int = 256  # calibration samples (digits training split, or from `calibration`)
    calibration: str | None = None  # a .npz of inputs; default: digits train split via the model's metadata
    eval_data: str | None = None  # a labelled .npz (inputs + `labels`); default: the digits test split
    max_accuracy_drop: float = 0.5  # percentage points; auto mode's budget, a check for the others
    # where the evaluation data has no labels: max |quantized - fp32| over max |fp32|, worst output
    max_output_error: float = 0.01
    # sizes of dynamic dims for random inputs (no data given, not a digits model); default: the export's
    inputs: tuple[TensorSpec, ...] = ()
    exclude: tuple[str, ...] = ()  # node names to keep in float
    keep_output_layer_float: bool = True
    min_conv_channels: int = MIN_INT8_CONV_CHANNELS  # convs with fewer input channels stay float (0: none)
    auto_recipes: tuple[str, ...] = AUTO_RECIPES
    latency: LatencyOptions = LatencyOptions()
    # providers (PROVIDER[:DEVICE][:PRECISION]) the evaluation measures both models on, side by side;
    # the first is where auto mode's speed and accuracy choices are made
    providers: tuple[str, ...] = ("cpu",)
    seed: int = 0  # which calibration samples are drawn
    verbose: bool = False  # let onnxruntime's tools print their own messages

    def checked(self) -> QuantizeOptions:
        for value, allowed, what in (
            (self.mode, MODES, "mode"),
            (self.format, FORMATS, "format"),
            (self.method, METHODS, "calibration method"),
        ):
            if value not in allowed:
                raise InputError(f"unknown {what} {value!r}; valid: {', '.join(allowed)}")
        unknown = [r for r in self.auto_recipes if r not in AUTO_RECIPES]
        if unknown or not self.auto_recipes:
            given = ", ".join(unknown) or "(none given)"
            raise InputError(f"unknown auto recipe(s) {given}; valid: {', '.join(AUTO_RECIPES)}")
        if self.samples < 1:
            raise InputError("--samples must be at least 1")
        if not np.isfinite(self.max_accuracy_drop):
            raise InputError("--max-accuracy-drop must be a finite number of percentage points")
        if not (np.isfinite(self.max_output_error) and self.max_output_error >= 0):
            raise InputError("--max-output-error must be a finite number, 0 or more (0.01: 1% of the output's scale)")
        if min(self.latency.batch_sizes, default=0) < 1 or self.latency.rounds < 1 or self.latency.repeats < 1:
            raise InputError("latency batch sizes, rounds and repeats must be positive")
        if not self.providers:
            raise InputError("no provider to evaluate on: give --providers cpu (or openvino, cuda, ...)")
        self.sessions()  # unknown providers and precisions are usage errors, found before any work
        return self

    def sessions(self) -> tuple[SessionConfig, ...]:
        """The session configurations the evaluation runs on, the first being auto mode's."""
        return tuple(dict.fromkeys(SessionConfig.parse(p, threads=self.latency.threads) for p in self.providers))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exclude"] = list(self.exclude)
        data["auto_recipes"] = list(self.auto_recipes)
        data["inputs"] = [str(spec) for spec in self.inputs]
        data["latency"] = self.latency.to_dict()
        data["providers"] = list(self.providers)
        return data


@dataclass(frozen=True)
class KeptFloat:
    """A node left in float, and why; auto mode's exclusions say what quantizing it cost."""

    node: str
    op_type: str
    reason: str
    cost_points: float | None = None  # accuracy recovered by keeping this node alone in float (selection data)
    drop_after_points: float | None = None  # the drop once this node and those before it are in float
    local_error: float | None = None  # its layer's own error in int8 (compare --layerwise), what ranked it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    """A recipe auto mode tried, on the selection data."""

    recipe: Recipe
    drop_points: float | None  # None where the selection data has no labels (output_error decides)
    speedup: float | None  # throughput against fp32 at the largest measured batch
    int8_compute: int
    within_budget: bool
    chosen: bool = False
    note: str = ""
    output_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "recipe": self.recipe.name}


@dataclass(frozen=True)
class QuantizeResult:
    source: str
    output: str
    recipe: Recipe
    kept_float: tuple[KeptFloat, ...]
    evaluation: Evaluation
    max_accuracy_drop: float
    calibration: str | None  # where the calibration samples came from (static recipes)
    candidates: tuple[Candidate, ...] = ()  # auto mode
    selection_data: str | None = None  # auto mode: the data its choices were made on
    budget_met: bool = True  # auto: met on the selection data; other modes: on the evaluation data
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    sensitivity: tuple[Sensitivity, ...] = ()  # auto mode, where it kept nodes in float: the ranking it used

    @property
    def excluded_for_accuracy(self) -> tuple[KeptFloat, ...]:
        return tuple(k for k in self.kept_float if k.reason == "accuracy")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "output": self.output,
            "recipe": self.recipe.to_dict(),
            "kept_float": [k.to_dict() for k in self.kept_float],
            "evaluation": self.evaluation.to_dict(),
            "max_accuracy_drop": self.max_accuracy_drop,
            "budget_met": self.budget_met,
            "calibration": self.calibration,
            "candidates": [c.to_dict() for c in self.candidates],
            "selection_data": self.selection_data,
            "notes": list(self.notes),
            "seconds": round(self.seconds, 2),
            "sensitivity": [s.to_dict() for s in self.sensitivity],
        }


@dataclass(frozen=True)
class Sensitivity:
    """How much error one quantized node's layer makes on its own (edgenn.layerwise's local figure: the
    int8 layer run on fp32's values of its inputs), relative to its range; what auto mode ranks by."""

    node: str
    op_type: str
    module: str | None
    local_error: float | None
    carried_error: float | None

    @property
    def error(self) -> float:
        return self.local_error if self.local_error is not None else (self.carried_error or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class _Source:
    path: Path
    model: Any  # onnx.ModelProto, without external data loaded
    inputs: tuple[TensorSpec, ...]
    fixed_batch: int | None


def read_model(path: str | os.PathLike[str]) -> _Source:
    """Load and check an fp32 ONNX model: readable, valid, not quantized already."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} not found")
    # the digest and the fault scan first: a damaged file is named as such, not by the checker's complaint
    examine(path.read_bytes(), str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends for anything that is not ONNX
        raise ModelFileError(f"{str(path)!r} is not an ONNX model or is corrupt ({first_line(exc)})") from None
    if not model.graph.node or not model.opset_import:
        raise ModelFileError(f"{str(path)!r} is not an ONNX model or is corrupt (it has no graph)")
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ModelFileError(f"{str(path)!r} is not a valid ONNX model ({first_line(exc)})") from None
    _refuse_quantized(model, path)
    inputs = evaluation_runner(path).inputs
    return _Source(path, model, inputs, fixed_batch(inputs))


def _refuse_quantized(model: Any, path: Path) -> None:
    import onnx

    ops = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS or n.op_type.startswith("QLinear")})
    if ops:
        raise EdgennError(
            f"{str(path)!r} is already quantized (it has {', '.join(ops)} nodes); quantize the float32 model"
        )
    low = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}
    found = sorted({low[t.data_type] for t in model.graph.initializer if t.data_type in low})
    if found:
        raise EdgennError(f"{str(path)!r} already holds {found[0]} weights; quantize the float32 model")


# ---------------------------------------------------------------------------------- the workshop
@dataclass(frozen=True)
class _Built:
    """A quantized model in the workshop, the recipe that made it and the nodes it kept in float."""

    path: Path
    recipe: Recipe
    kept: tuple[KeptFloat, ...]


class _Workshop:
    """A temporary folder holding the pre-processed model and everything built from it."""

    def __init__(self, folder: str, source: _Source, options: QuantizeOptions, step: Callable[[str], None]) -> None:
        self.folder = Path(folder)
        self.source = source
        self.options = options
        self.step = step
        self.pre_path = self.folder / "preprocessed.onnx"
        self.nodes: dict[str, Any] = {}  # name -> NodeProto of the pre-processed graph, in graph order
        self.weights: dict[str, Any] = {}  # initializer name -> TensorProto (dims only are used)
        self._calibration: Samples | None = None
        self._built = 0

    # -- pre-processing
    def preprocess(self) -> None:
        """onnxruntime's quant_pre_process, then a name for every node (exclusions address nodes by name)."""
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.step("pre-processing: shape inference and onnxruntime's optimisations")
        attempts = ({}, {"skip_symbolic_shape": True})  # symbolic inference fails on some graphs; onnx's is enough
        failure = ""
        for kwargs in attempts:
            try:
                with silenced(not self.options.verbose):
                    quant_pre_process(str(self.source.path), str(self.pre_path), **kwargs)
                break
            except Exception as exc:
                failure = first_line(exc)
        else:
            raise ModelFileError(
                f"onnxruntime's quantization pre-processing failed on {self.source.path.name}: {failure}"
            )
        model = onnx.load(str(self.pre_path))
        named = {n.name for n in model.graph.node if n.name}
        seen: set[str] = set()
        for index, node in enumerate(model.graph.node):
            if not node.name or node.name in seen:  # unnamed or a duplicate: give it a name of its own
                name = f"{node.op_type}_{index}"
                while name in named:
                    name += "_"
                node.name = name
                named.add(name)
            seen.add(node.name)
        onnx.save(unseal(model), str(self.pre_path))  # what quantize builds from it is sealed when written
        self.nodes = {n.name: n for n in model.graph.node}
        self.weights = {t.name: t for t in model.graph.initializer}

    # -- which nodes stay float, and why
    def default_float(self, recipe: Recipe) -> tuple[KeptFloat, ...]:
        """The nodes a recipe keeps in float before any accuracy search: the user's, then the measured rules."""
        kept: dict[str, KeptFloat] = {}
        for name in self.options.exclude:
            kept[name] = KeptFloat(name, self.nodes[name].op_type, "user")
        if not recipe.int8:
            return tuple(kept.values())
        covered = recipe.covers
        compute = [n for n in self.nodes.values() if n.op_type in COMPUTE_OPS]  # graph order is topological
        last = compute[-1] if compute else None
        if (
            self.options.keep_output_layer_float
            and recipe.mode == "static"
            and last is not None
            and last.op_type in ("Gemm", "MatMul")
            and last.name not in kept
        ):
            kept[last.name] = KeptFloat(last.name, last.op_type, "output layer: int8 there adds logit error")
        for node in self.nodes.values():
            if node.name in kept or node.op_type not in COMPUTE_OPS:
                continue
            if node.op_type not in covered:
                why = f"onnxruntime's {recipe.mode} quantizer has no int8 {node.op_type}"
                kept[node.name] = KeptFloat(node.name, node.op_type, why)
            elif node.op_type == "Conv" and recipe.mode == "dynamic":
                why = "dynamic int8 conv (ConvInteger) is 6-8x slower than float here"
                kept[node.name] = KeptFloat(node.name, "Conv", why)
            elif node.op_type == "Conv" and self._input_channels(node) < self.options.min_conv_channels:
                channels = self._input_channels(node)
                kept[node.name] = KeptFloat(
                    node.name,
                    "Conv",
                    f"{channels} input channel{'s' * (channels != 1)}: "
                    f"int8 is slower than float below {self.options.min_conv_channels}",
                )
        return tuple(kept.values())

    def _input_channels(self, node: Any) -> int:
        """Input channels per group of a Conv (a large number when unknown, so it is quantized)."""
        weight = self.weights.get(node.input[1]) if len(node.input) > 1 else None
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if weight is None or len(weight.dims) < 2 or group != 1:
            return 1 << 30  # depthwise and grouped convs have their own fast int8 kernels
        return int(weight.dims[1])

    def excludable(self, recipe: Recipe, kept: Sequence[str]) -> list[str]:
        """Nodes the recipe quantizes that could be kept in float, in graph order (data movement left out,
        unless it holds float weights, as an embedding's Gather does)."""
        import onnx

        covered = recipe.covers

        def holds_weights(node: Any) -> bool:
            return any(
                name in self.weights and self.weights[name].data_type == onnx.TensorProto.FLOAT for name in node.input
            )

        return [
            n.name
            for n in self.nodes.values()
            if n.op_type in covered and n.name not in kept and (n.op_type not in DATA_MOVEMENT_OPS or holds_weights(n))
        ]

    # -- building
    def build(self, recipe: Recipe, kept: Sequence[KeptFloat]) -> _Built:
        """Quantize the pre-processed model with `recipe`, keeping the `kept` nodes in float."""
        keep_float = [k.node for k in kept]
        self._built += 1
        out = self.folder / f"candidate-{self._built}-{recipe.name}.onnx"
        if recipe.mode == "static" and not self._calibration_cache(recipe).is_file():
            self.step(f"calibrating ({recipe.method}, {len(self.calibration_samples())} samples)")
        try:
            with silenced(not self.options.verbose):
                recipe.build(self.pre_path, out, keep_float, self._context(recipe))
                if recipe.int8:
                    _drop_zero_points_where_harmless(out)
        except EdgennError:
            raise
        except Exception as exc:
            raise EdgennError(f"onnxruntime could not quantize with {recipe.name}: {first_line(exc)}") from None
        return _Built(out, recipe, tuple(kept))

    def _context(self, recipe: Recipe) -> BuildContext:
        def reader() -> Any:
            return calibration.calibration_reader(self.calibration_samples(), self.source.fixed_batch)

        op_types = {name: node.op_type for name, node in self.nodes.items()}
        return BuildContext(reader, self._calibration_cache(recipe), op_types)

    def _calibration_cache(self, recipe: Recipe) -> Path:
        """One calibration per method, reused by every later build (auto mode and tune build many)."""
        return self.folder / f"calibration-{recipe.method}.json"

    @property
    def calibration_source(self) -> str | None:
        return self._calibration.source if self._calibration is not None else None

    def calibration_available(self) -> bool:
        """Whether static recipes have data: --calibration, or the zoo's digits."""
        if self.options.calibration:
            return True
        prep = calibration.read_preprocessing(self.source.model)
        return prep is not None and prep.is_digits and len(self.source.inputs) == 1

    def calibration_samples(self) -> Samples:
        if self._calibration is None:
            opts = self.options
            if opts.calibration:
                found = calibration.load_npz(opts.calibration, self.source.inputs, "--calibration", labelled=False)
            else:
                prep = calibration.read_preprocessing(self.source.model)
                found = calibration.digits_samples(self.source.inputs, prep, "train", "--calibration")
            self._calibration = calibration.take(found, opts.samples, "--calibration", opts.seed)
        return self._calibration


# ---------------------------------------------------------------------------------------- public
def quantize(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: QuantizeOptions = QuantizeOptions(),
    on_step: Callable[[str], None] | None = None,
) -> QuantizeResult:
    """Quantize `model` into `output` and measure what it cost against the fp32 model.

    Nothing is written to `output` unless the whole run succeeds; the file is replaced atomically.
    """
    started = time.perf_counter()
    step = on_step or (lambda _text: None)
    options = options.checked()
    _check_providers(options.sessions())
    source = read_model(model)
    output = Path(output)
    _check_output(output, source.path)
    with scratch_folder("quantize") as folder, _ort_logs_quiet(options.verbose):
        shop = _Workshop(folder, source, options, step)
        skipped_static: list[str] = []
        if options.mode == "auto" and not shop.calibration_available():
            # static int8 needs calibration data; auto tries what needs none rather than refuse
            skipped_static = [n for n in options.auto_recipes if _named_recipe(n, options.method).mode == "static"]
            kept = tuple(n for n in options.auto_recipes if n not in skipped_static)
            if not kept:
                raise InputError("the static recipes asked for need calibration data: pass --calibration data.npz")
            options = replace(options, auto_recipes=kept)
            shop.options = options
        if _needs_calibration(options):  # data problems are found before any long work
            shop.calibration_samples()
        eval_samples = _evaluation_samples(source, options)
        shop.preprocess()
        _check_exclusions(shop, options.exclude)
        if options.mode == "auto":
            outcome = _auto(shop, eval_samples)
            built, candidates, selection = outcome.built, outcome.candidates, outcome.selection
            sensitivity = outcome.sensitivity
            notes, met_on_selection = list(outcome.notes), outcome.budget_met
            if skipped_static:
                notes.append(
                    f"not tried: {', '.join(skipped_static)} (static int8 needs calibration data: "
                    "pass --calibration data.npz)"
                )
        else:
            recipe = _recipe(options)
            step(f"quantizing: {recipe.name}")
            built = shop.build(recipe, shop.default_float(recipe))
            _refuse_empty(built)
            candidates, selection, notes, met_on_selection, sensitivity = (), None, [], None, ()
        step(f"evaluating fp32 against {built.recipe.name} on {eval_samples.source}")
        evaluation = evaluate(
            source.path,
            built.path,
            eval_samples,
            options.latency,
            source.fixed_batch,
            fp16=built.recipe.mode == "fp16",
            sessions=options.sessions(),
        )
        calib = shop.calibration_source if built.recipe.mode == "static" else None
        final = finalised(built, source, evaluation, calib)
        _check_loads(final, built.recipe.name)
        evaluation = replace(evaluation, quantized_bytes=len(final))
        # auto mode judges the budget on the selection data, where its choice was made
        budget_met = met_on_selection if met_on_selection is not None else _within_budget(evaluation, options)
        notes += _notes(built, evaluation, options)
        with atomic_path(output) as tmp:
            tmp.write_bytes(final)
    return QuantizeResult(
        source=str(source.path),
        output=str(output),
        recipe=built.recipe,
        kept_float=built.kept,
        evaluation=evaluation,
        max_accuracy_drop=options.max_accuracy_drop,
        calibration=calib,
        candidates=tuple(candidates),
        selection_data=selection,
        budget_met=budget_met,
        notes=tuple(notes),
        seconds=time.perf_counter() - started,
        sensitivity=sensitivity,
    )


def _recipe(options: QuantizeOptions) -> Recipe:
    return Recipe(options.mode, options.format, options.per_channel, options.method)


def _needs_calibration(options: QuantizeOptions) -> bool:
    if options.mode == "auto":
        return any(_named_recipe(name, options.method).mode == "static" for name in options.auto_recipes)
    return options.mode == "static"


def _named_recipe(name: str, method: str) -> Recipe:
    return recipes.get(name).with_method(method)


def _check_providers(configs: Sequence[SessionConfig]) -> None:
    """Every provider asked for runs here, at the precision asked: found before any long work."""
    for config in configs:
        reason = session_unavailable(config)
        if reason:
            raise ProviderError(f"--providers {config.label}: {reason}")


def _check_output(output: Path, source: Path) -> None:
    if output.is_dir():
        raise InputError(f"output {str(output)!r} is a folder; give a file name such as {source.stem}.int8.onnx")
    if output.exists() and output.resolve() == source.resolve():
        raise InputError(f"output {str(output)!r} is the model being quantized; write to another file")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise EdgennError(f"output folder {str(folder)!r} does not exist; create it first")


def _check_exclusions(shop: _Workshop, names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in shop.nodes]
    if unknown:
        known = [n.name for n in shop.nodes.values() if n.op_type in COMPUTE_OPS] or list(shop.nodes)
        raise InputError(
            f"--exclude {unknown[0]!r}: the model has no node of that name; its compute nodes are "
            f"{', '.join(known[:12])}{' ...' if len(known) > 12 else ''}"
        )


def _evaluation_samples(source: _Source, options: QuantizeOptions) -> Samples:
    """--eval-data (labels where it has them), else the digits test split for the zoo's models, else
    seeded random inputs: output error and timings, no accuracy."""
    if options.eval_data:
        return calibration.load_npz(options.eval_data, source.inputs, "--eval-data", labelled=None)
    prep = calibration.read_preprocessing(source.model)
    if prep is not None and prep.is_digits and len(source.inputs) == 1:
        return calibration.digits_samples(source.inputs, prep, "test", "--eval-data")
    return _random_samples(source, options, seed=options.seed)


def _random_samples(source: _Source, options: QuantizeOptions, seed: int) -> Samples:
    sizes = calibration.stored_dim_sizes(source.model)
    for spec in options.inputs:
        model_spec = next((s for s in source.inputs if s.name == spec.name), None)
        if model_spec is None:
            names = ", ".join(s.name for s in source.inputs)
            raise InputError(f"--input {spec.name}: the model has no input of that name; its inputs are {names}")
        for dim, size in zip(model_spec.shape[1:], spec.shape[1:]):
            if isinstance(dim, str) and isinstance(size, int):
                sizes[dim] = size
    return calibration.random_samples(source.inputs, sizes, seed)


def _within_budget(evaluation: Evaluation, options: QuantizeOptions) -> bool:
    if evaluation.drop_points is not None:
        return evaluation.drop_points <= options.max_accuracy_drop
    return evaluation.output_error <= options.max_output_error


def _refuse_empty(built: _Built) -> None:
    """An int8 recipe that left every compute node in float would be an fp32 model in disguise."""
    if not built.recipe.int8 or optimised_kernels(built.path).int8_compute:
        return
    why = "; ".join(dict.fromkeys(f"{k.op_type}: {k.reason}" for k in built.kept)) or "no node it can quantize"
    hint = "--mode dynamic" if built.recipe.mode == "static" else "--mode static"
    raise EdgennError(f"{built.recipe.name} quantized no compute node ({why}); try {hint} or --mode auto")


# ------------------------------------------------------------------------------------- auto mode
@dataclass(frozen=True)
class _Score:
    accuracy: float | None  # None where the selection data has no labels
    drop_points: float | None
    output_error: float  # max |out - fp32| over max |fp32|, worst output
    mean_abs_error: float  # of the first output against fp32; breaks ties between equal accuracies

    @property
    def cost(self) -> float:
        """What the budget is on: accuracy points lost where there are labels, else the output error."""
        return self.drop_points if self.drop_points is not None else self.output_error


@dataclass(frozen=True)
class _AutoOutcome:
    built: _Built
    candidates: tuple[Candidate, ...]
    selection: str
    budget_met: bool
    notes: tuple[str, ...]
    sensitivity: tuple[Sensitivity, ...] = ()


class _Judge:
    """Scores candidates on the selection data against the fp32 model's predictions there."""

    def __init__(self, shop: _Workshop, samples: Samples) -> None:
        self.shop, self.samples = shop, samples
        self.threads = shop.options.latency.threads
        self.config = evaluation_configs(shop.options.sessions()[:1], self.threads)[0]
        self.fp32 = evaluation_runner(shop.source.path, config=self.config)
        self.reference = predict(self.fp32, samples, shop.source.fixed_batch)
        self.labelled = samples.labels is not None
        self.fp32_accuracy = accuracy(self.reference, samples.labels) if self.labelled else None
        options = shop.options
        self.budget = options.max_accuracy_drop if self.labelled else options.max_output_error
        self.budget_text = (
            f"{options.max_accuracy_drop:g} accuracy points"
            if self.labelled
            else f"an output error of {options.max_output_error:g}"
        )

    def score(self, built: _Built) -> _Score:
        outputs = predict(evaluation_runner(built.path, config=self.config), self.samples, self.shop.source.fixed_batch)
        error = float(np.mean(np.abs(outputs[0].astype(np.float64) - self.reference[0])))
        relative = output_error(self.reference, outputs).relative
        if not self.labelled:
            return _Score(None, None, relative, error)
        acc = accuracy(outputs, self.samples.labels)
        return _Score(acc, 100.0 * (self.fp32_accuracy - acc), relative, error)

    def speedups(self, builds: Sequence[_Built]) -> list[float]:
        """Throughput of each build against fp32 at the largest measured batch, all interleaved in one loop."""
        options = self.shop.options.latency
        batches, _ = measured_batches(options, self.shop.source.fixed_batch)
        sessions = [self.fp32] + [evaluation_runner(b.path, config=self.config) for b in builds]
        times = median_latencies(sessions, self.samples, max(batches), options)
        return [times[0] / t for t in times[1:]]


def _selection_samples(source: _Source, options: QuantizeOptions, eval_samples: Samples) -> tuple[Samples, str]:
    if options.eval_data:
        return eval_samples, (
            "auto mode chose on the evaluation data itself (no separate validation data): its figures are optimistic"
        )
    prep = calibration.read_preprocessing(source.model)
    if prep is not None and prep.is_digits and len(source.inputs) == 1:
        return calibration.digits_samples(source.inputs, prep, "val", "--eval-data"), ""
    # other random inputs than the evaluation's, so that the choice and the report stay apart
    return _random_samples(source, options, seed=options.seed + 1), ""


# A recipe later in the preference order must be this much faster to displace an earlier one:
# closer timings are the machine's noise, and the pick must not change from run to run.
PICK_MARGIN = 1.10


def stable_fastest(candidates: Sequence[int], speedups: Sequence[float | None]) -> int:
    """The fastest of `candidates` (indices in preference order), unless only noise separates them."""
    best = candidates[0]
    for i in candidates[1:]:
        if (speedups[i] or 0.0) > (speedups[best] or 0.0) * PICK_MARGIN:
            best = i
    return best


def _auto(shop: _Workshop, eval_samples: Samples) -> _AutoOutcome:
    """Try the recipes, keep the fastest within the budget; else keep the costliest nodes in float."""
    options = shop.options
    selection, note = _selection_samples(shop.source, options, eval_samples)
    judge = _Judge(shop, selection)
    budget = judge.budget
    tried: list[tuple[_Built, _Score, int]] = []
    skipped: list[Candidate] = []
    for name in options.auto_recipes:
        recipe = _named_recipe(name, options.method)
        shop.step(f"auto: trying {recipe.name}")
        try:
            built = shop.build(recipe, shop.default_float(recipe))
        except EdgennError as exc:
            skipped.append(Candidate(recipe, None, None, 0, False, note=str(exc)))
            continue
        int8_ops = optimised_kernels(built.path, judge.threads).int8_compute if recipe.int8 else 0
        if recipe.int8 and not int8_ops:
            skipped.append(Candidate(recipe, None, None, 0, False, note="no compute node ends up in int8"))
            continue
        tried.append((built, judge.score(built), int8_ops))
    if not tried:
        reasons = "; ".join(f"{c.recipe.name}: {c.note}" for c in skipped)
        raise EdgennError(f"no recipe could quantize this model: {reasons}")
    shop.step("auto: timing the candidates against fp32, side by side")
    speedups = judge.speedups([b for b, _, _ in tried])
    within = [i for i, (_, s, _) in enumerate(tried) if s.cost <= budget]
    notes = [note] if note else []
    sensitivity: list[Sensitivity] = []
    if within:
        # what auto optimises is speed, then size: a candidate neither faster nor smaller than fp32 is no answer
        fp32_bytes = _bytes(shop.source.path)
        better = [
            i
            for i in within
            if speedups[i] > FASTER_THAN_FP32 or _final_bytes(tried[i][0], shop) < SMALLER_THAN_FP32 * fp32_bytes
        ]
        pick = stable_fastest(better or within, speedups)
        chosen, met = tried[pick][0], True
        if not better:
            notes.append(
                "kept fp32: no recipe within the budget was faster than fp32 "
                f"(best {max(speedups[i] for i in within):.2f}x) or smaller"
            )
            candidates = _candidates(tried, skipped, speedups, budget, chosen=-1)
            return _AutoOutcome(
                _Built(shop.source.path, KEPT_FP32, ()), candidates, selection.source, True, tuple(notes)
            )
    else:
        int8 = [i for i, (b, _, _) in enumerate(tried) if b.recipe.int8]
        if not int8:
            pick = min(range(len(tried)), key=lambda i: tried[i][1].cost)
            chosen, met = tried[pick][0], False
        else:
            pick = max(int8, key=lambda i: speedups[i])
            chosen, met, sensitivity = _keep_costliest_in_float(shop, judge, tried[pick][0], tried[pick][1], budget)
        if not met:
            notes.append(
                f"the budget of {judge.budget_text} was not met even with every quantizable node in float; "
                "kept the best found"
            )
    extra = len(chosen.kept) - len(tried[pick][0].kept)
    candidates = _candidates(tried, skipped, speedups, budget, pick, extra)
    return _AutoOutcome(chosen, candidates, selection.source, met, tuple(notes), tuple(sensitivity))


def _candidates(tried, skipped, speedups, budget, chosen: int, extra: int = 0) -> tuple[Candidate, ...]:
    return tuple(
        Candidate(
            b.recipe,
            s.drop_points,
            speedups[i],
            ops,
            s.cost <= budget,
            chosen=i == chosen,
            note=f"then {extra} more node(s) kept in float for accuracy" if i == chosen and extra else "",
            output_error=s.output_error,
        )
        for i, (b, s, ops) in enumerate(tried)
    ) + tuple(skipped)


def _bytes(path: Path) -> int:
    return path.stat().st_size


def _final_bytes(built: _Built, shop: _Workshop) -> int:
    """The size of the file as it would be written (with its metadata: on a small model that decides)."""
    return len(finalised(built, shop.source, None, shop.calibration_source))


def _keep_costliest_in_float(
    shop: _Workshop, judge: _Judge, base: _Built, base_score: _Score, budget: float
) -> tuple[_Built, bool, list[Sensitivity]]:
    """Rank the quantized nodes by the error each one's layer makes on its own (one layer-by-layer walk of
    fp32 against the quantized model: edgenn.layerwise), then keep them in float one at a time, most
    sensitive first, until the budget holds. Returns the build, whether it held, and the ranking."""
    names = shop.excludable(base.recipe, [k.node for k in base.kept])
    shop.step(f"auto: ranking {len(names)} quantized nodes by their layers' own error")
    ranking = layer_sensitivity(shop, judge, base, names)
    best, best_score = base, base_score
    kept, current = list(base.kept), base_score
    for entry in ranking:
        if current.cost <= budget:
            break
        shop.step(f"auto: keeping {entry.node} in float")
        keep = KeptFloat(entry.node, entry.op_type, "accuracy", local_error=entry.error)
        trial = shop.build(base.recipe, (*kept, keep))
        current = judge.score(trial)
        kept.append(replace(keep, drop_after_points=current.drop_points))
        if (current.cost, current.mean_abs_error) < (best_score.cost, best_score.mean_abs_error):
            best, best_score = replace(trial, kept=tuple(kept)), current
    return best, best_score.cost <= budget, ranking


SENSITIVITY_SAMPLES = 64  # the batch the layer-by-layer walk runs on


def layer_sensitivity(shop: _Workshop, judge: _Judge, base: _Built, names: Sequence[str]) -> list[Sensitivity]:
    """Each of `names` (quantized nodes of the pre-processed fp32 graph) with its layer's own error, most
    sensitive first. A node whose output is not read on its own (fused into the next op) takes the figure
    of the first layer after it."""
    from edgenn.layerwise import OnnxSide, compare_layers

    feeds = judge.samples.batch(min(SENSITIVITY_SAMPLES, len(judge.samples)))
    with scratch_folder("sensitivity") as folder:
        reference_dir, candidate_dir = Path(folder) / "fp32", Path(folder) / "int8"
        reference_dir.mkdir()
        candidate_dir.mkdir()
        reference = OnnxSide(shop.pre_path, judge.config, "fp32", reference_dir)
        candidate = OnnxSide(base.path, judge.config, base.recipe.name, candidate_dir)
        walk = compare_layers(reference, candidate, feeds, tolerance=1.0)
    layers = {layer.tensor: layer for layer in walk.layers}
    consumers: dict[str, list[Any]] = {}
    for node in shop.nodes.values():
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out = []
    for position, name in enumerate(names):
        node = shop.nodes[name]
        tensor, hops = node.output[0], 0
        while tensor not in layers and hops < 4 and len(consumers.get(tensor, ())) == 1:
            tensor, hops = consumers[tensor][0].output[0], hops + 1
        layer = layers.get(tensor)
        local = layer.local.relative if layer is not None and layer.local is not None else None
        carried = layer.carried.relative if layer is not None and layer.carried is not None else None
        own = next((prop.value for prop in node.metadata_props if prop.key == NODE_MODULE), None)
        module = own if own is not None else (layer.module if layer is not None else None)
        out.append((position, Sensitivity(name, node.op_type, module, local, carried)))
    out.sort(key=lambda pair: (-pair[1].error, pair[0]))  # most sensitive first; ties in graph order
    return [entry for _, entry in out]


# ---------------------------------------------------------------------------------- the output
def _check_loads(model_bytes: bytes, recipe: str) -> None:
    """What is written must be what was evaluated: a file onnxruntime loads."""
    try:
        evaluation_runner(model_bytes)
    except EdgennError as exc:
        raise EdgennError(f"the {recipe} model came out unloadable ({exc}); nothing was written") from None


def _drop_zero_points_where_harmless(path: Path) -> None:
    """Drop the all-zero weight zero points of the file at `path` where onnxruntime still fuses the same kernels.

    Without them onnxruntime fuses QLinearConv as before, but no longer QGemm: the MLP's static QDQ
    file ran its Gemms in float behind DequantizeLinear (0 int8 compute nodes, measured). So the
    file is only rewritten where the optimised graph's op counts stay the same.
    """
    import onnx

    model = onnx.load(str(path))
    _drop_zero_weight_zero_points(model)
    trial = path.with_suffix(".no-zero-points.onnx")
    onnx.save(model, str(trial))
    try:
        if optimised_kernels(trial).op_counts == optimised_kernels(path).op_counts:
            os.replace(trial, path)
    finally:
        trial.unlink(missing_ok=True)


def _drop_zero_weight_zero_points(model: Any) -> None:
    """Remove the zero-point inputs of DequantizeLinear nodes on symmetric int8 weights.

    They are all zeros (the input's default), yet cost a tensor per weight: about 1% of a small
    CNN's int8 file. onnxruntime fuses the same QLinearConv/QGemm kernels without them.
    """
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    dropped: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) != 3:
            continue
        weight, zero_point = initializers.get(node.input[0]), initializers.get(node.input[2])
        if weight is None or zero_point is None:
            continue
        values = numpy_helper.to_array(zero_point)
        if values.dtype == np.int8 and not values.any():
            dropped.add(node.input[2])
            del node.input[2]
    unused = dropped - _names_used(model.graph)
    kept = [t for t in model.graph.initializer if t.name not in unused]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _names_used(graph: Any) -> set[str]:
    """Every tensor name a graph reads, its subgraphs (If/Loop/Scan bodies) and outputs included."""
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                used |= _names_used(sub)
    return used


def carry_module_map(source: Any, model: Any) -> None:
    """Give each node of the quantized `model` the module path (meta.NODE_MODULE) of the fp32 node it came
    from, which onnxruntime's quantizers do not always keep (the dynamic one drops every tag): by node
    name, else by the longest fp32 node name it starts with (node_linear -> node_linear_MatMul_quant)."""
    modules = {n.name: p.value for n in source.graph.node for p in n.metadata_props if p.key == NODE_MODULE and n.name}
    names = sorted(modules, key=len, reverse=True)
    for node in model.graph.node:
        if any(p.key == NODE_MODULE for p in node.metadata_props) or not node.name:
            continue
        origin = node.name if node.name in modules else next((n for n in names if node.name.startswith(n + "_")), None)
        if origin is not None and node.op_type not in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
            node.metadata_props.add(key=NODE_MODULE, value=modules[origin])


def finalised(built: _Built, source: _Source, evaluation: Evaluation | None, calib: str | None) -> bytes:
    """The quantized model with the fp32 model's edgenn metadata and the recipe, serialised (tune, which
    records its figures in deploy.json, passes no evaluation)."""
    import onnx

    model = onnx.load(str(built.path))  # its zero points were dropped where harmless when it was built
    carry_module_map(source.model, model)
    carried = {p.key: p.value for p in source.model.metadata_props if p.key.startswith(META_PREFIX)}
    carried.pop(META_VALIDATION, None)  # the export's parity check was for the fp32 model, not this one
    carried.pop(META_ACCURACY, None)
    source_digest = file_digest(source.path.read_bytes())
    if source_digest is not None:  # which float32 file this is a version of (no digest: not edgenn's file)
        carried[META_SOURCE_DIGEST] = source_digest
    if evaluation is not None and evaluation.data == "digits test split" and evaluation.quantized_accuracy is not None:
        carried[META_ACCURACY] = f"{evaluation.quantized_accuracy:.6f}"
    record: dict[str, Any] = {
        "recipe": built.recipe.to_dict(),
        "kept_float": [{"node": k.node, "op_type": k.op_type, "reason": k.reason} for k in built.kept],
        "calibration": calib,
        "source_file": source.path.name,
        "edgenn": edgenn_version(),
        "onnxruntime": library_version("onnxruntime"),
    }
    if evaluation is not None:
        record["evaluation"] = {
            "provider": evaluation.providers[0].provider if evaluation.providers else "cpu",
            "data": evaluation.data,
            "samples": evaluation.samples,
            "fp32_accuracy": _rounded(evaluation.fp32_accuracy, 6),
            "accuracy": _rounded(evaluation.quantized_accuracy, 6),
            "drop_points": _rounded(evaluation.drop_points, 4),
            "argmax_agreement": _rounded(evaluation.argmax_agreement, 6),
            "max_abs_error": evaluation.max_abs_error,
            "output_error": evaluation.output_error,
        }
    carried[META_QUANTIZATION] = json.dumps(record, separators=(",", ":"))
    others = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    for key, value in [*others, *carried.items()]:
        model.metadata_props.add(key=key, value=value)
    if evaluation is None:
        figures = ""
    elif evaluation.labelled:
        figures = (
            f": accuracy {100 * evaluation.quantized_accuracy:.2f}% against {100 * evaluation.fp32_accuracy:.2f}% "
            f"in fp32 on the {evaluation.data}"
        )
    else:
        figures = f": output error {evaluation.output_error:.3g} of the fp32 outputs' scale on {evaluation.data}"
    model.doc_string = (source.model.doc_string + " " if source.model.doc_string else "") + (
        f"Quantized by edgenn ({built.recipe.name}){figures}."
    )
    return sealed_bytes(model, f"the {built.recipe.name} model of {source.path.name}")


def _notes(built: _Built, evaluation: Evaluation, options: QuantizeOptions) -> list[str]:
    notes = []
    if evaluation.drop_points is not None and evaluation.drop_points > options.max_accuracy_drop:
        notes.append(
            f"accuracy drop of {evaluation.drop_points:.2f} points on the {evaluation.data} exceeds the "
            f"budget of {options.max_accuracy_drop:g} points"
        )
    if evaluation.drop_points is None:
        notes.append(
            f"no labels: judged by output error ({evaluation.output_error:.3g} of the fp32 outputs' scale, "
            f"budget {options.max_output_error:g}), not accuracy"
        )
        if evaluation.output_error > options.max_output_error:
            notes.append(
                f"output error {evaluation.output_error:.3g} exceeds the budget of {options.max_output_error:g}"
            )
    if built.recipe is KEPT_FP32:
        return notes
    if evaluation.size_ratio >= 1.0:
        notes.append(
            f"the {built.recipe.name} file is not smaller than fp32 ({100 * evaluation.size_ratio:.0f}% of its size)"
        )
    if evaluation.latency:
        largest = max(evaluation.latency, key=lambda lat: lat.batch_size)
        if largest.speedup < SLOWER_THAN_FP32:
            buys = "it buys size, not speed" if evaluation.size_ratio < 1.0 else "it is slower and no smaller"
            notes.append(
                f"{built.recipe.name} runs slower than fp32 at batch {largest.batch_size} "
                f"({largest.speedup:.2f}x): on this model {buys}"
            )
    kernels = evaluation.kernels
    if built.recipe.int8 and not kernels.int8_compute:
        notes.append("every compute node ended in float: this model is not really quantized")
    if built.recipe.mode == "fp16" and kernels.no_fp16_kernel:
        notes.append(
            f"the CPU provider has no fp16 kernel for {', '.join(kernels.no_fp16_kernel)}: onnxruntime runs "
            f"them in fp32 behind casts ({kernels.fp16_nodes} of {kernels.fp16_candidates} converted nodes "
            "compute in fp16)"
        )
    if evaluation.latency_note:
        notes.append(evaluation.latency_note)
    return notes


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# ------------------------------------------------------------------------------------- plumbing
@contextlib.contextmanager
def _ort_logs_quiet(verbose: bool) -> Iterator[None]:
    """onnxruntime's own sessions (the calibrator's among them) log warnings and red error lines unless
    told otherwise; edgenn reports their errors itself, in one line."""
    import onnxruntime as ort

    if not verbose:
        ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        if not verbose:
            ort.set_default_logger_severity(2)  # onnxruntime's default: warnings


_callable_stage(__name__)  # `edgenn.quantize(...)` works even after `import edgenn.quantize`
