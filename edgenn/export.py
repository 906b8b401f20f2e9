"""nn.Module -> one self-contained .onnx file, validated against the eager module, with metadata.

The dynamo (torch.export + onnxscript) exporter goes first; the TorchScript exporter is the
fall-back, or the choice. The file is written atomically, and only once validation has passed
(or `keep_invalid` asks for it anyway).
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenn import _callable_stage
from edgenn import specs as meta
from edgenn.calling import FLAT_CALL_ATTRIBUTE, FlatCall
from edgenn.calling import output_names as structured_output_names
from edgenn.errors import EdgennError, ExportError, InputError, ProviderError, ValidationError, first_line
from edgenn.fileio import atomic_path, check_file_target, refuse_same_file, scratch_folder
from edgenn.parity import Tolerance
from edgenn.quiet import silenced
from edgenn.runners import TorchRunner, flatten_outputs
from edgenn.runtime.integrity import sealed_bytes
from edgenn.runtime.session import SessionConfig
from edgenn.runtime.session import unavailable as session_unavailable
from edgenn.sources import LoadedSource, load_source
from edgenn.specs import BATCH, Preprocessing, TensorSpec
from edgenn.validate import ParityCase, ValidationReport, feeds_from_tensors, format_dims, onnx_dims, validate
from edgenn.versions import edgenn_version, library_versions

EXPORTERS = ("auto", "dynamo", "torchscript")
# Exported with a batch of 2: a batch-1 example lets some exporters pin the batch dim silently.
EXPORT_BATCH = 2
TORCHSCRIPT_DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ExportOptions:
    opset: int | None = None  # None: the exporter's own default
    dynamic_batch: bool = True
    exporter: str = "auto"  # auto (dynamo, then torchscript) | dynamo | torchscript
    parity_batches: tuple[int, ...] = (1, 7, 64)
    tolerance: Tolerance = Tolerance()
    keep_invalid: bool = False
    verbose: bool = False  # let the exporters print their own progress and warnings
    output_names: tuple[str, ...] = ()  # default: dict keys and named-tuple fields, else output / output_i
    # sizes of named dynamic dims: (name, export size, second parity size or None for 2n-1)
    dims: tuple[tuple[str, int, int | None], ...] = ()
    # TorchScript tracing that warns (data-dependent control flow, Python values frozen) fails the
    # export unless this is set: such a file computes one branch for every input
    allow_trace_warnings: bool = False
    # parity on these providers too (PROVIDER[:DEVICE][:PRECISION], e.g. openvino:bf16), each with
    # the tolerance its precision allows (edgenn.validate.tolerance_for)
    validate_on: tuple[str, ...] = ()

    def checked(self) -> ExportOptions:
        if self.exporter not in EXPORTERS:
            raise EdgennError(f"unknown exporter {self.exporter!r}; valid: {', '.join(EXPORTERS)}")
        if not self.parity_batches or min(self.parity_batches) < 1:
            raise EdgennError("parity batch sizes must be positive")
        for name, size, second in self.dims:
            if name == BATCH:
                raise InputError(f"--dim {name}: the batch sizes come from --batch, not --dim")
            if size < 1 or (second is not None and (second < 1 or second == size)):
                raise InputError(f"--dim {name}={size},{second}: give two different positive sizes, like {name}=64,128")
        if len({n for n, _, _ in self.dims}) != len(self.dims):
            raise InputError("--dim names each dimension once")
        if len(set(self.output_names)) != len(self.output_names):
            raise InputError(f"output names must be unique, got {', '.join(self.output_names)}")
        self.validation_sessions()
        return self

    def validation_sessions(self) -> tuple[SessionConfig, ...]:
        """The extra providers to check parity on; unknown names and ones not here are one-line errors."""
        configs = tuple(dict.fromkeys(SessionConfig.parse(text) for text in self.validate_on))
        for config in configs:
            reason = session_unavailable(config)
            if reason:
                raise ProviderError(f"--validate-on {config.label}: {reason}")
        return configs


@dataclass(frozen=True)
class ExportResult:
    """What came out of an export; `path` is None when validation failed and nothing was kept."""

    path: Path | None
    source: str
    exporter: str
    exporter_note: str
    opset_requested: int | None
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    node_count: int
    file_bytes: int
    export_seconds: float
    validate_seconds: float
    validation: ValidationReport
    metadata: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.validation.passed

    def raise_for_failure(self) -> ExportResult:
        if not self.passed:
            kept = f"kept at {self.path}" if self.path else "no file written (keep_invalid keeps it)"
            departure = next((n for n in self.validation.notes if n.startswith("first departs at")), None)
            where = f"; {departure}" if departure else ""
            raise ValidationError(f"validation failed: {self.validation.first_failure}{where}; {kept}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "source": self.source,
            "passed": self.passed,
            "exporter": self.exporter,
            "exporter_note": self.exporter_note,
            "opset_requested": self.opset_requested,
            "opset": self.opset,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "node_count": self.node_count,
            "file_bytes": self.file_bytes,
            "export_seconds": round(self.export_seconds, 3),
            "validate_seconds": round(self.validate_seconds, 3),
            "validation": self.validation.to_dict(),
            "metadata": {k: v for k, v in self.metadata.items() if k != meta.META_VALIDATION},
        }


def export_source(
    spec: str,
    path: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None,
    options: ExportOptions = ExportOptions(),
    input_specs: tuple[TensorSpec, ...] = (),
    softmax_output: bool | None = None,
    on_step: Callable[[str], None] | None = None,
    random_weights: bool = False,
    preprocessing: Preprocessing | None = None,
) -> ExportResult:
    """Export a zoo model (with weights) or a user's `file.py:factory` / `module:attr`.

    A zoo model without `weights` is refused unless `random_weights`. `preprocessing` describes how
    a picture becomes the (one) input; it is stored in the model for `edgenn predict` and the runtime.
    """
    options = options.checked()  # providers asked for are checked before the (slow) load
    source_file = spec.rsplit(":", 1)[0] if spec.rsplit(":", 1)[0].endswith(".py") else None
    refuse_same_file(path, ("weights file", weights), ("source file", source_file))
    if on_step:
        on_step(f"loading {spec}")
    source = load_source(spec, weights, input_specs, softmax_output, random_weights=random_weights)
    if preprocessing is not None:
        source = replace(source, preprocessing=check_preprocessing(preprocessing, source.input_specs))
    return export_loaded(source, path, options, on_step)


def export_loaded(
    source: LoadedSource,
    path: str | os.PathLike[str],
    options: ExportOptions = ExportOptions(),
    on_step: Callable[[str], None] | None = None,
) -> ExportResult:
    return export(
        source.module,
        None,
        path,
        input_specs=source.input_specs,
        options=options,
        labels=source.labels,
        preprocessing=source.preprocessing,
        accuracy=source.accuracy,
        source=source.name,
        loaded=source,
        on_step=on_step,
    )


def export(
    module: nn.Module,
    example_inputs: Any,
    path: str | os.PathLike[str],
    input_specs: Sequence[TensorSpec] | None = None,
    options: ExportOptions = ExportOptions(),
    labels: Sequence[str] = (),
    preprocessing: Preprocessing | None = None,
    accuracy: float | None = None,
    source: str = "",
    loaded: LoadedSource | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export `module` to `path` and validate it; see ExportResult for what comes back.

    A failed validation does not raise: the result says so (`passed`, `raise_for_failure()`),
    and no file is left at `path` unless `options.keep_invalid`.
    """
    step = on_step or (lambda _text: None)
    options = options.checked()
    path = check_file_target(path, error=ExportError)
    module = module.eval()
    if loaded is None:
        loaded = _loaded_from_call(module, example_inputs, input_specs, source, labels, preprocessing, accuracy)
        module = loaded.module
    specs = _batch_specs(loaded.input_specs, options.dynamic_batch)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ExportError(f"input names must be unique, got {', '.join(names)}; name each --input differently")
    loaded = replace(loaded, input_specs=specs, dim_sizes=_dim_sizes(options, specs))
    export_batch = EXPORT_BATCH if options.dynamic_batch else _static_batch(specs)
    examples = loaded.example_inputs(export_batch)
    step("running the eager forward pass")
    raw, outputs = _run_eager(module, examples, specs, loaded)
    output_names = list(options.output_names) or structured_output_names(raw)
    if len(output_names) != len(outputs):
        raise ExportError(
            f"{len(output_names)} output name(s) given ({', '.join(output_names)}) for {len(outputs)} outputs; "
            f"give --output once per output"
        )
    if len(set(output_names)) != len(output_names) or set(output_names) & set(names):
        raise ExportError(
            f"output names {', '.join(output_names)} repeat each other or an input's name; name them with --output"
        )

    started = time.perf_counter()
    proto, exporter, note = _export_proto(module, examples, specs, output_names, options, step)
    # the wrapper that takes dict/list/keyword inputs flat is not the user's: its path prefix goes
    _strip_node_metadata(proto.graph, wrapper=FLAT_CALL_ATTRIBUTE if isinstance(module, FlatCall) else None)
    export_seconds = time.perf_counter() - started
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if options.opset is not None and opset != options.opset:
        note += f"; asked for opset {options.opset}, the file has opset {opset}"
    out_specs = tuple(TensorSpec(o.name, tuple(onnx_dims(o)), _onnx_dtype(o)) for o in proto.graph.output)
    base_meta = _metadata(loaded, specs, out_specs, exporter, opset)
    _set_metadata(proto, base_meta, doc=_doc_string(loaded, specs, exporter, opset))

    kept: Path | None = path
    try:
        with atomic_path(path) as tmp:
            _save(proto, tmp, str(path))
            step("validating: checker, shape inference, onnxruntime, parity")
            started = time.perf_counter()
            reference = TorchRunner(module, [s.name for s in specs], output_names, name="eager")
            batches, skipped = _parity_batches(options, export_batch)
            report = validate(
                tmp,
                reference,
                specs,
                lambda: _parity_cases(loaded, batches, options.dynamic_batch),
                options.tolerance,
                classifier=bool(loaded.labels) or _looks_like_classifier(outputs),
                skipped=skipped,
                on=options.validation_sessions(),
            )
            if not report.passed and any(not p.passed for _, p in report.parity):
                step("finding the first layer that departs")
                report = _with_departure(report, module, [s.name for s in specs], tmp, loaded, batches, options)
            validate_seconds = time.perf_counter() - started
            summary = json.dumps(_validation_summary(report), separators=(",", ":"))
            final_meta = {**base_meta, meta.META_VALIDATION: summary}
            _set_metadata(proto, final_meta, doc=_doc_string(loaded, specs, exporter, opset, report))
            _save(proto, tmp, str(path))
            size = tmp.stat().st_size
            if not (report.passed or options.keep_invalid):
                raise _Discard()
    except _Discard:
        kept = None
    return ExportResult(
        kept,
        loaded.name,
        exporter,
        note,
        options.opset,
        opset,
        specs,
        out_specs,
        len(proto.graph.node),
        size,
        export_seconds,
        validate_seconds,
        report,
        final_meta,
    )


def _with_departure(report: Any, module: Any, names: list[str], path: Path, loaded, batches, options) -> Any:
    """The report with a note naming the first module whose layer departs (compare --layerwise's walk, on
    the first parity case that failed), where the file keeps a module map and the walk can run."""
    from edgenn.layerwise import EagerSide, OnnxSide, compare_layers
    from edgenn.runtime.session import SessionConfig

    failed = {label for label, parity in report.parity if not parity.passed}
    case = next((c for c in _parity_cases(loaded, batches, options.dynamic_batch) if c.label in failed), None)
    if case is None:
        return report
    try:
        with scratch_folder("departure") as scratch:
            candidate = OnnxSide(path, SessionConfig(), "onnx", Path(scratch), names)
            walk = compare_layers(EagerSide(module, names, "eager"), candidate, case.feeds, LAYER_TOLERANCE)
    except EdgennError:
        return report  # no module map (TorchScript), or a graph the walk cannot cut: the figures stand alone
    if walk.first_departure is None:
        return report
    return replace(report, notes=(*report.notes, f"{walk.departure_line()} (on {case.label})"))


LAYER_TOLERANCE = 1e-3  # float32 layers agree to rounding: compare's default for float32 on both sides


class _Discard(Exception):
    """Raised inside atomic_path to throw the temporary file away."""


def _loaded_from_call(module, example_inputs, input_specs, source, labels, preprocessing, accuracy) -> LoadedSource:
    """What `export(module, example_inputs)` is given, in the shape load_source gives for a factory."""
    from edgenn.calling import flat_call, layout_of, positional_layout
    from edgenn.sources import _specs_from_examples

    name = source or type(module).__name__
    if example_inputs is None:
        layout, flat = positional_layout(module, len(input_specs or ())), None
    else:
        layout, flat = layout_of(module, example_inputs, name)
    specs = tuple(input_specs) if input_specs else _specs_from_examples(flat, name, layout.names, module)
    if preprocessing is not None:
        preprocessing = check_preprocessing(preprocessing, specs)
    return LoadedSource(
        name,
        flat_call(module, layout),
        specs,
        tuple(labels),
        preprocessing,
        accuracy,
        user_examples=flat or None,
        layout=layout,
    )


def _batch_specs(specs: Sequence[TensorSpec], dynamic: bool) -> tuple[TensorSpec, ...]:
    """Dynamic export: the first dim is the symbolic batch. Static: a symbolic batch becomes 1."""
    out = []
    for spec in specs:
        if not spec.shape:
            out.append(spec)
        elif dynamic and spec.shape[0] != BATCH:  # a size, or another name: the first dim is the batch
            out.append(spec.with_batch(BATCH))
        elif not dynamic and spec.shape[0] == BATCH:
            out.append(spec.with_batch(1))
        else:
            out.append(spec)
    return tuple(out)


def _static_batch(specs: Sequence[TensorSpec]) -> int:
    first = specs[0].shape[0] if specs and specs[0].shape else 1
    return first if isinstance(first, int) else 1


def _run_eager(
    module: nn.Module, examples: tuple[torch.Tensor, ...], specs: Sequence[TensorSpec], loaded: LoadedSource
) -> tuple[Any, list[torch.Tensor]]:
    """The module's output on the export example (as it returned it, and flattened)."""
    shown = ", ".join(f"{s.name}: {format_dims(tuple(t.shape))} {s.dtype}" for s, t in zip(specs, examples))
    try:
        with torch.no_grad():
            raw = module(*examples)
        out = flatten_outputs(raw)
    except Exception as exc:
        raise ExportError(
            f"the module's forward raised on the example input ({shown}): {type(exc).__name__}: {first_line(exc)}; "
            + _dims_hint(loaded, "check --input shapes and dtypes")
        ) from None
    if not out or not all(isinstance(t, torch.Tensor) for t in out):
        raise ExportError("the module must return a tensor, or a tuple/list/dict/named tuple of tensors")
    return raw, out


def _dims_hint(loaded: LoadedSource, otherwise: str) -> str:
    """What to do when the module refuses the sizes edgenn chose: name --dim where a dim was not sized by the user."""
    named = sorted({str(d) for s in loaded.input_specs for d in s.shape if isinstance(d, str) and d != BATCH})
    unsized = [d for d in named if d not in loaded.dim_sizes]
    if not unsized:
        return otherwise
    sizes = loaded._user_dim_sizes()
    chosen = ", ".join(f"{d}={sizes[d]}" for d in unsized)
    example = " ".join(f"--dim {d}=64,128" for d in unsized)
    return (
        f"edgenn chose the sizes of dynamic dims ({chosen}, then 2n-1); if the model needs others (a multiple of 16, "
        f"say), choose them: {example}"
    )


def _dim_sizes(options: ExportOptions, specs: Sequence[TensorSpec]) -> dict[str, tuple[int, int | None]]:
    named = {str(d) for s in specs for d in s.shape if isinstance(d, str)}
    unknown = [n for n, _, _ in options.dims if n not in named]
    if unknown:
        shown = ", ".join(sorted(named - {BATCH})) or "none (name them in --input, e.g. image:1x3xHxW)"
        raise InputError(f"--dim {unknown[0]}: no input has a dimension of that name; the named dims are {shown}")
    return {name: (size, second) for name, size, second in options.dims}


def _export_proto(module, examples, specs, output_names, options, step) -> tuple[Any, str, str]:
    order = ["dynamo", "torchscript"] if options.exporter == "auto" else [options.exporter]
    failures: list[str] = []
    for exporter in order:
        step(f"exporting with the {exporter} exporter")
        try:
            with silenced(not options.verbose):
                if exporter == "dynamo":
                    proto, frozen_at = _export_dynamo(module, examples, specs, output_names, options), ""
                else:
                    proto, frozen_at = _export_torchscript(module, examples, specs, output_names, options)
        except Exception as exc:
            failures.append(f"{exporter}: {_explain_failure(exc, module, examples)}")
            continue
        if exporter == "dynamo":
            note = "dynamo exporter (torch.export + onnxscript), the default"
        elif options.exporter == "torchscript":
            note = "TorchScript exporter, as asked"
        else:
            note = f"TorchScript exporter, because the dynamo exporter failed ({failures[0].split(': ', 1)[1]})"
        if frozen_at:
            note += (
                f"; tracing froze a value computed from the inputs at {frozen_at} (allowed by --allow-trace-warnings)"
            )
        return proto, exporter, note
    raise ExportError(
        "export failed: " + "; ".join(f"{f.split(': ', 1)[0]} exporter: {f.split(': ', 1)[1]}" for f in failures)
    )


def _export_dynamo(module, examples, specs, output_names, options):
    dims: dict[str, Any] = {}
    dynamic_shapes = tuple(
        {i: dims.setdefault(str(d), torch.export.Dim(str(d))) for i, d in enumerate(spec.shape) if isinstance(d, str)}
        or None
        for spec in specs
    )
    program = torch.onnx.export(
        module,
        examples,
        input_names=[s.name for s in specs],
        output_names=output_names,
        opset_version=options.opset,
        dynamo=True,
        dynamic_shapes=dynamic_shapes if any(dynamic_shapes) else None,
        optimize=True,
        external_data=False,
    )
    return program.model_proto


def _export_torchscript(module, examples, specs, output_names, options):
    import onnx

    dynamic_axes = {s.name: {i: str(d) for i, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}
    dynamic_axes = {k: v for k, v in dynamic_axes.items() if v}
    if options.dynamic_batch:
        for name in output_names:
            dynamic_axes[name] = {0: BATCH}
    with scratch_folder("torchscript") as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        target = Path(tmp) / "model.onnx"
        torch.onnx.export(
            module,
            examples,
            str(target),
            input_names=[s.name for s in specs],
            output_names=output_names,
            opset_version=options.opset or TORCHSCRIPT_DEFAULT_OPSET,
            dynamo=False,
            dynamic_axes=dynamic_axes or None,
        )
        # torch's own modules (nn.GRU checking its input size) warn about Python values that the
        # module's construction fixes; only what the user's code computes from the inputs counts
        torch_dir = Path(torch.__file__).resolve().parent
        frozen = [
            w
            for w in caught
            if issubclass(w.category, torch.jit.TracerWarning)
            and not Path(w.filename).resolve().is_relative_to(torch_dir)
        ]
        if frozen and not options.allow_trace_warnings:
            raise FrozenTrace(frozen[0], len(frozen))
        allowed = FrozenTrace(frozen[0], len(frozen)).where if frozen else ""
        return onnx.load(str(target)), allowed


class FrozenTrace(Exception):
    """TorchScript tracing recorded a Python value where the model computes one from its inputs."""

    def __init__(self, warning: warnings.WarningMessage, count: int) -> None:
        self.where = f"{Path(warning.filename).name}:{warning.lineno}"
        code = linecache.getline(warning.filename, warning.lineno).strip()
        self.code = code
        what = str(warning.message).split(".", 1)[0].strip()
        more = f" (and {count - 1} more place(s))" if count > 1 else ""
        super().__init__(
            f"tracing froze a value computed from the inputs at {self.where}"
            + (f" ({code})" if code else "")
            + f"{more}: {what}, so the file would take one path for every input; express it with tensor ops "
            "(torch.where, torch.cond) or pass --allow-trace-warnings if that value is truly constant"
        )


def _explain_failure(exc: BaseException, module: nn.Module, examples: tuple[torch.Tensor, ...]) -> str:
    if isinstance(exc, FrozenTrace):
        return str(exc)
    text = str(exc)
    op = _unsupported_operator(text)
    if op:
        where = _submodule_using(module, examples, op)
        return f"operator {op} cannot be expressed in ONNX" + (f" (used in {where})" if where else "")
    for cause in _causes(exc):
        op = _unsupported_operator(str(cause))
        if op:
            return f"operator {op} cannot be expressed in ONNX"
    return f"{type(exc).__name__}: {_summary_line(text)}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen = 0
    while exc is not None and seen < 10:
        exc = exc.__cause__ or exc.__context__
        seen += 1
        if exc is not None:
            yield exc


_OP_PATTERNS = (
    r"No ONNX function found for <OpOverload\(op='([\w.]+)'",
    r"Exporting the operator '([\w:.]+)' to ONNX",
    r"Unsupported: ONNX export of operator ([\w:.]+)",
)


def _unsupported_operator(text: str) -> str | None:
    for pattern in _OP_PATTERNS:
        match = re.search(pattern, text)
        if match:
            return match.group(1).replace("::", ".")
    return None


def _submodule_using(module: nn.Module, examples: tuple[torch.Tensor, ...], op: str) -> str | None:
    """Find the submodule whose forward calls `op`, from torch.export's per-node module stack."""
    base = op.split(".")[-1]
    try:
        with silenced(True):
            program = torch.export.export(module, examples, strict=False)
    except Exception:
        return None
    for node in program.graph.nodes:
        if node.op == "call_function" and base in str(node.target):
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                path, kind = list(stack.values())[-1]
                kind_name = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1])
                return f"submodule {path!r} ({kind_name})" if path else f"the top-level module ({kind_name})"
    return None


def _strip_node_metadata(graph: Any, wrapper: str | None = None) -> None:
    """Drop the exporter's per-node stack traces and annotations (they leak build paths and are
    most of a small model's bytes), in this graph and every subgraph, keeping of each node only the
    path of the module that made it (meta.NODE_MODULE, what compare --layerwise matches by)."""
    del graph.metadata_props[:]
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        del value.metadata_props[:]
    for node in graph.node:
        module = module_path_of(node)
        if wrapper is not None and module is not None:
            module = "" if module == wrapper else module.removeprefix(wrapper + ".")
        del node.metadata_props[:]
        if module is not None:
            node.metadata_props.add(key=meta.NODE_MODULE, value=module)
        node.doc_string = ""
        for attr in node.attribute:
            if attr.HasField("g"):
                _strip_node_metadata(attr.g, wrapper)
            for sub in attr.graphs:
                _strip_node_metadata(sub, wrapper)


def module_path_of(node: Any) -> str | None:
    """The path of the PyTorch module whose forward made `node`, or None where the exporter did not say.

    The dynamo exporter records the scopes a node was made in (`pkg.torch.onnx.name_scopes`: "",
    "layer1", "layer1.bn1", then the FX node's own name); where it fused nodes (a BatchNorm into the
    Conv before it), the node carries the scope of the last one, whose output it computes. The
    TorchScript exporter puts the scopes in the node name ("/layer1/layer1.0/conv1/Conv").
    """
    props = {p.key: p.value for p in node.metadata_props}
    scopes = props.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            names = ast.literal_eval(scopes)  # a Python list's repr
        except (ValueError, SyntaxError):
            return None
        return str(names[-2]) if isinstance(names, list) and len(names) >= 2 else ""
    if node.name.startswith("/"):  # "/Neg": made by the top-level module's own forward
        path = ""
        for part in node.name.split("/")[1:-1]:
            path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
        return path
    return None


def _metadata(loaded: LoadedSource, specs, out_specs, exporter: str, opset: int) -> dict[str, str]:
    data = {
        meta.META_VERSION: edgenn_version(),
        meta.META_SOURCE: loaded.name,
        meta.META_INPUTS: json.dumps([s.to_dict() for s in specs]),
        meta.META_OUTPUTS: json.dumps([s.to_dict() for s in out_specs]),
        meta.META_VERSIONS: json.dumps(library_versions()),
        "edgenn.exporter": exporter,
        "edgenn.opset": str(opset),
    }
    if loaded.labels:
        data[meta.META_LABELS] = json.dumps(list(loaded.labels))
    if loaded.preprocessing is not None:
        data[meta.META_PREPROCESSING] = json.dumps(loaded.preprocessing.to_dict())
    if loaded.accuracy is not None:
        data[meta.META_ACCURACY] = f"{loaded.accuracy:.6f}"
    named = {str(d) for spec in specs for d in spec.shape if isinstance(d, str) and d != BATCH}
    if named:  # the sizes it was validated at: bench and quantize use them where not told others
        sizes = loaded._user_dim_sizes()
        data[meta.META_DIM_SIZES] = json.dumps({d: sizes[d] for d in sorted(named) if d in sizes})
    if loaded.random_weights:
        data["edgenn.weights"] = "random (exported with --random-weights: not trained)"
    return data


def check_preprocessing(prep: Preprocessing, specs: Sequence[TensorSpec]) -> Preprocessing:
    """A picture preprocessing must fit the model's one float input: rank 4, channels and fixed sizes."""
    if prep.is_digits:
        return prep
    if len(specs) != 1:
        raise InputError(f"--preprocess describes one picture input; the model has {len(specs)} inputs")
    spec = specs[0]
    if len(spec.shape) != 4 or not spec.dtype.startswith("float"):
        raise InputError(
            f"--preprocess makes a (batch, C, H, W) or (batch, H, W, C) float picture; input {spec} is not one"
        )
    channels_at, spatial = (1, (2, 3)) if prep.layout == "NCHW" else (3, (1, 2))
    channels = spec.shape[channels_at]
    if isinstance(channels, int) and channels != prep.channels:
        raise InputError(
            f"--preprocess {prep.layout} {prep.color} gives {prep.channels} channel(s), input {spec} takes {channels} "
            f"at dim {channels_at}; check layout= and color="
        )
    for axis, want in zip(spatial, prep.size):
        have = spec.shape[axis]
        if isinstance(have, int) and have != want:
            raise InputError(
                f"--preprocess size={prep.size[0]}x{prep.size[1]} does not fit input {spec} "
                f"(dim {axis} is {have}); give the size the model takes"
            )
    return prep


def _set_metadata(proto: Any, data: dict[str, str], doc: str) -> None:
    kept = [p for p in proto.metadata_props if not p.key.startswith(meta.META_PREFIX)]
    del proto.metadata_props[:]
    for prop in kept:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in data.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = doc


def _doc_string(loaded, specs, exporter, opset, report: ValidationReport | None = None) -> str:
    parts = [f"{loaded.name}, exported by edgenn {edgenn_version()} ({exporter} exporter, opset {opset})."]
    parts.append("Inputs: " + ", ".join(str(s) for s in specs) + ".")
    if loaded.preprocessing is not None:
        parts.append(f"Preprocessing: {loaded.preprocessing.describe()}.")
    if loaded.labels:
        parts.append(f"Labels: {', '.join(loaded.labels)}.")
    if loaded.accuracy is not None:
        parts.append(f"Test accuracy (digits): {100 * loaded.accuracy:.2f}%.")
    if report is not None:
        cases = ", ".join(label for label, _ in report.parity)
        parts.append(
            f"Validated against eager PyTorch ({cases}): worst max abs error {report.worst_max_abs_error:.3g}."
        )
    return " ".join(parts)


def _validation_summary(report: ValidationReport) -> dict[str, Any]:
    return {
        "passed": report.passed,
        "cases": [
            {
                "case": label,
                "max_abs_error": p.max_abs_error,
                "argmax_agreement": min(
                    (o.argmax_agreement for o in p.outputs if o.argmax_agreement is not None), default=None
                ),
            }
            for label, p in (*report.parity, *report.provider_parity)
        ],
        "dynamic_dims": report.dynamic_dims,
    }


def _save(proto: Any, target: Path, label: str) -> None:
    """The model with its digest (checked by every load): one file, weights inside."""
    target.write_bytes(sealed_bytes(proto, label))


def _parity_batches(options: ExportOptions, export_batch: int) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if options.dynamic_batch:
        return tuple(options.parity_batches), ()
    skipped = tuple(
        f"batch {b}: the batch dim is static ({export_batch})" for b in options.parity_batches if b != export_batch
    )
    return (export_batch,), skipped


# Random parity batches are seeded apart: each batch is new data, not a prefix of the last, so a
# branch that tracing froze shows up in one of them (2 of 5 exports passed with one shared seed).
PARITY_SEED = 1000


def _parity_cases(loaded: LoadedSource, batches: Sequence[int], dynamic_batch: bool = True) -> list[ParityCase]:
    """Every parity batch (each independently seeded), the user's own example inputs, and each named
    dynamic dim at a second size."""
    cases = [
        ParityCase(
            f"batch {b}", b, feeds_from_tensors(loaded.input_specs, loaded.example_inputs(b, seed=PARITY_SEED + i))
        )
        for i, b in enumerate(batches)
    ]
    examples = loaded.user_examples
    if examples and len(examples) == len(loaded.input_specs) and (dynamic_batch or _fits_static(loaded, examples)):
        batch = int(examples[0].shape[0]) if examples[0].dim() else 1
        cases.append(ParityCase("your example inputs", batch, feeds_from_tensors(loaded.input_specs, examples)))
    sizes = loaded.second_dim_sizes()
    if sizes:
        batch = max(batches)
        shown = ", ".join(f"{d} {n}" for d, n in sizes.items())
        tensors = loaded.example_inputs(batch, seed=PARITY_SEED + len(batches), **sizes)
        cases.append(ParityCase(f"batch {batch}, {shown}", batch, feeds_from_tensors(loaded.input_specs, tensors)))
    return cases


def _fits_static(loaded: LoadedSource, examples: Sequence[torch.Tensor]) -> bool:
    return all(
        len(s.shape) == t.dim() and all(not isinstance(d, int) or d == n for d, n in zip(s.shape, t.shape))
        for s, t in zip(loaded.input_specs, examples)
    )


def _looks_like_classifier(outputs: Sequence[torch.Tensor]) -> bool:
    return len(outputs) == 1 and outputs[0].dim() == 2 and outputs[0].shape[1] > 1


def _onnx_dtype(value_info: Any) -> str:
    import onnx

    elem = value_info.type.tensor_type.elem_type
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem).name
    except Exception:
        return "float32"


def _summary_line(text: str) -> str:
    """The most telling line of an exporter's long error text."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("<class") and ":" in line:
            return line.split(">: ", 1)[-1][:300]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else "unknown error"


_callable_stage(__name__)  # `edgenn.export(...)` works even after `import edgenn.export`
