"""nn.Module -> one self-contained .onnx file, validated against the eager module, with metadata.

The dynamo (torch.export + onnxscript) exporter goes first; the TorchScript exporter is the
fall-back, or the choice. The file is written atomically, and only once validation has passed
(or `keep_invalid` asks for it anyway).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenn import _callable_stage
from edgenn import specs as meta
from edgenn.errors import EdgennError, ExportError, ProviderError, ValidationError, first_line
from edgenn.fileio import atomic_path, check_file_target, refuse_same_file
from edgenn.parity import Tolerance
from edgenn.quiet import silenced
from edgenn.runners import TorchRunner, flatten_outputs
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
    output_names: tuple[str, ...] = ()
    # parity on these providers too (PROVIDER[:DEVICE][:PRECISION], e.g. openvino:bf16), each with
    # the tolerance its precision allows (edgenn.validate.tolerance_for)
    validate_on: tuple[str, ...] = ()

    def checked(self) -> ExportOptions:
        if self.exporter not in EXPORTERS:
            raise EdgennError(f"unknown exporter {self.exporter!r}; valid: {', '.join(EXPORTERS)}")
        if not self.parity_batches or min(self.parity_batches) < 1:
            raise EdgennError("parity batch sizes must be positive")
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
            raise ValidationError(f"validation failed: {self.validation.first_failure}; {kept}")
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
) -> ExportResult:
    """Export a zoo model (with weights) or a user's `file.py:factory` / `module:attr`."""
    options = options.checked()  # providers asked for are checked before the (slow) load
    source_file = spec.rsplit(":", 1)[0] if spec.rsplit(":", 1)[0].endswith(".py") else None
    refuse_same_file(path, ("weights file", weights), ("source file", source_file))
    if on_step:
        on_step(f"loading {spec}")
    source = load_source(spec, weights, input_specs, softmax_output)
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
        examples = _as_tuple(example_inputs)
        specs = tuple(input_specs) if input_specs else _specs_for(examples)
        loaded = LoadedSource(
            source or type(module).__name__,
            module,
            specs,
            tuple(labels),
            preprocessing,
            accuracy,
            user_examples=examples or None,
        )
    specs = _batch_specs(loaded.input_specs, options.dynamic_batch)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ExportError(f"input names must be unique, got {', '.join(names)}; name each --input differently")
    loaded = replace(loaded, input_specs=specs)
    export_batch = EXPORT_BATCH if options.dynamic_batch else _static_batch(specs)
    examples = loaded.example_inputs(export_batch)
    step("running the eager forward pass")
    outputs = _run_eager(module, examples, specs)
    output_names = list(options.output_names) or (
        ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    )
    if len(output_names) != len(outputs):
        raise ExportError(f"{len(output_names)} output names given for {len(outputs)} outputs")

    started = time.perf_counter()
    proto, exporter, note = _export_proto(module, examples, specs, output_names, options, step)
    _strip_node_metadata(proto.graph)
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
            _save(proto, tmp)
            step("validating: checker, shape inference, onnxruntime, parity")
            started = time.perf_counter()
            reference = TorchRunner(module, [s.name for s in specs], output_names, name="eager")
            batches, skipped = _parity_batches(options, export_batch)
            report = validate(
                tmp,
                reference,
                specs,
                lambda: _parity_cases(loaded, batches),
                options.tolerance,
                classifier=bool(loaded.labels) or _looks_like_classifier(outputs),
                skipped=skipped,
                on=options.validation_sessions(),
            )
            validate_seconds = time.perf_counter() - started
            summary = json.dumps(_validation_summary(report), separators=(",", ":"))
            final_meta = {**base_meta, meta.META_VALIDATION: summary}
            _set_metadata(proto, final_meta, doc=_doc_string(loaded, specs, exporter, opset, report))
            _save(proto, tmp)
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


class _Discard(Exception):
    """Raised inside atomic_path to throw the temporary file away."""


def _as_tuple(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    if example_inputs is None:
        return ()
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    return tuple(example_inputs)


def _specs_for(examples: tuple[torch.Tensor, ...]) -> tuple[TensorSpec, ...]:
    from edgenn.sources import _specs_from_examples

    return _specs_from_examples(examples, "the module")


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
    module: nn.Module, examples: tuple[torch.Tensor, ...], specs: Sequence[TensorSpec]
) -> list[torch.Tensor]:
    shown = ", ".join(f"{s.name}: {format_dims(tuple(t.shape))} {s.dtype}" for s, t in zip(specs, examples))
    try:
        with torch.no_grad():
            out = flatten_outputs(module(*examples))
    except Exception as exc:
        raise ExportError(
            f"the module's forward raised on the example input ({shown}): {type(exc).__name__}: {first_line(exc)}; "
            "check --input shapes and dtypes"
        ) from None
    if not out or not all(isinstance(t, torch.Tensor) for t in out):
        raise ExportError("the module must return a tensor, or a tuple/list/dict of tensors")
    return out


def _export_proto(module, examples, specs, output_names, options, step) -> tuple[Any, str, str]:
    order = ["dynamo", "torchscript"] if options.exporter == "auto" else [options.exporter]
    failures: list[str] = []
    for exporter in order:
        step(f"exporting with the {exporter} exporter")
        try:
            with silenced(not options.verbose):
                proto = (_export_dynamo if exporter == "dynamo" else _export_torchscript)(
                    module, examples, specs, output_names, options
                )
        except Exception as exc:
            failures.append(f"{exporter}: {_explain_failure(exc, module, examples)}")
            continue
        if exporter == "dynamo":
            note = "dynamo exporter (torch.export + onnxscript), the default"
        elif options.exporter == "torchscript":
            note = "TorchScript exporter, as asked"
        else:
            note = f"TorchScript exporter, because the dynamo exporter failed ({failures[0].split(': ', 1)[1]})"
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
    with tempfile.TemporaryDirectory() as tmp:
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
        return onnx.load(str(target))


def _explain_failure(exc: BaseException, module: nn.Module, examples: tuple[torch.Tensor, ...]) -> str:
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


def _strip_node_metadata(graph: Any) -> None:
    """Drop the exporter's per-node stack traces and annotations (they leak build paths and are
    most of a small model's bytes), in this graph and every subgraph."""
    del graph.metadata_props[:]
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        del value.metadata_props[:]
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attr in node.attribute:
            if attr.HasField("g"):
                _strip_node_metadata(attr.g)
            for sub in attr.graphs:
                _strip_node_metadata(sub)


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
    return data


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
        p = loaded.preprocessing
        parts.append(
            f"Preprocessing: grey-scale digit, {p.source_size[0]}x{p.source_size[1]} in [0, 1], layout {p.layout}"
            + (f" resized to {p.size[0]}x{p.size[1]}." if p.layout == "image" else ".")
        )
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


def _save(proto: Any, target: Path) -> None:
    import onnx

    onnx.save_model(proto, str(target), save_as_external_data=False)


def _parity_batches(options: ExportOptions, export_batch: int) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if options.dynamic_batch:
        return tuple(options.parity_batches), ()
    skipped = tuple(
        f"batch {b}: the batch dim is static ({export_batch})" for b in options.parity_batches if b != export_batch
    )
    return (export_batch,), skipped


def _parity_cases(loaded: LoadedSource, batches: Sequence[int]) -> list[ParityCase]:
    cases = [
        ParityCase(f"batch {b}", b, feeds_from_tensors(loaded.input_specs, loaded.example_inputs(b))) for b in batches
    ]
    # Dynamic dims other than batch (a sequence length, say) are tested at a second size.
    other = {str(d) for s in loaded.input_specs for d in s.shape if isinstance(d, str) and d != BATCH}
    if other:
        base = loaded._user_dim_sizes()
        sizes = {d: base.get(d, 8) * 2 - 1 for d in sorted(other)}
        batch = max(batches)
        shown = ", ".join(f"{d} {n}" for d, n in sizes.items())
        tensors = loaded.example_inputs(batch, seed=1, **sizes)
        cases.append(ParityCase(f"batch {batch}, {shown}", batch, feeds_from_tensors(loaded.input_specs, tensors)))
    return cases


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
