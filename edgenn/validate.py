"""Proving an ONNX file right: checker, shape inference, an ORT session, parity against a reference.

Each stage returns its figures; `validate` gathers them into a ValidationReport. Printing is
somebody else's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgenn import _callable_stage
from edgenn.errors import first_line
from edgenn.parity import ParityReport, Tolerance, compare
from edgenn.runners import OrtRunner
from edgenn.specs import Runner, TensorSpec

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class StageResult:
    """One validation stage: did it pass, how long it took, and what it found (one line)."""

    name: str
    passed: bool
    seconds: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "seconds": round(self.seconds, 4), "detail": self.detail}


@dataclass(frozen=True)
class ParityCase:
    """Inputs to compare on: a label for reports (e.g. "batch 7"), the batch size and the feeds."""

    label: str
    batch_size: int
    feeds: Feeds


@dataclass(frozen=True)
class ValidationReport:
    stages: tuple[StageResult, ...]
    parity: tuple[tuple[str, ParityReport], ...] = ()
    dynamic_dims: dict[str, list[str]] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.stages) and all(p.passed for _, p in self.parity)

    @property
    def worst_max_abs_error(self) -> float:
        return max((p.max_abs_error for _, p in self.parity), default=0.0)

    @property
    def first_failure(self) -> str:
        for label, report in self.parity:
            for out in report.outputs:
                if not out.passed:
                    return (
                        f"parity at {label}, output {out.name!r}: max abs error {out.max_abs_error:.3g}, "
                        f"{100 * out.mismatch_fraction:.2f}% of values outside atol {report.tolerance.atol:g} + "
                        f"rtol {report.tolerance.rtol:g}"
                    )
        for stage in self.stages:
            if not stage.passed:
                return f"{stage.name}: {stage.detail}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "stages": [s.to_dict() for s in self.stages],
            "parity": [{"case": label, **p.to_dict()} for label, p in self.parity],
            "dynamic_dims": self.dynamic_dims,
            "skipped": list(self.skipped),
            "worst_max_abs_error": self.worst_max_abs_error,
        }


def check_model(path: Path) -> StageResult:
    import onnx

    started = time.perf_counter()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx raises ValidationError and InferenceError, among others
        return StageResult("onnx.checker", False, time.perf_counter() - started, first_line(exc))
    return StageResult("onnx.checker", True, time.perf_counter() - started, "full check passed")


def infer_shapes(path: Path) -> StageResult:
    import onnx

    started = time.perf_counter()
    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True, data_prop=True)
    except Exception as exc:
        return StageResult("shape inference", False, time.perf_counter() - started, first_line(exc))
    typed = len(model.graph.value_info) + len(model.graph.output)
    outputs = ", ".join(f"{o.name}: {format_dims(onnx_dims(o))}" for o in model.graph.output)
    return StageResult(
        "shape inference", True, time.perf_counter() - started, f"{typed} tensors typed; outputs {outputs}"
    )


def open_session(
    path: Path, providers: Sequence[str] = ("CPUExecutionProvider",)
) -> tuple[StageResult, OrtRunner | None]:
    from edgenn.errors import ModelFileError

    started = time.perf_counter()
    try:
        runner = OrtRunner(str(path), providers=providers, name="onnxruntime")
    except ModelFileError as exc:
        return StageResult("onnxruntime session", False, time.perf_counter() - started, str(exc)), None
    provider = runner.session.get_providers()[0]
    return StageResult("onnxruntime session", True, time.perf_counter() - started, f"created on {provider}"), runner


def onnx_dims(value_info: Any) -> list[int | str]:
    return [
        d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in value_info.type.tensor_type.shape.dim
    ]


def format_dims(dims: Sequence[int | str]) -> str:
    return "x".join(str(d) for d in dims) or "scalar"


def check_dynamic_dims(path: Path, specs: Sequence[TensorSpec]) -> tuple[StageResult, dict[str, list[str]]]:
    """Every dim meant to be symbolic must be symbolic in the saved graph (exporters can pin them)."""
    import onnx

    started = time.perf_counter()
    graph_inputs = {i.name: onnx_dims(i) for i in onnx.load(str(path), load_external_data=False).graph.input}
    dynamic: dict[str, list[str]] = {}
    pinned: list[str] = []
    for spec in specs:
        dims = graph_inputs.get(spec.name)
        if dims is None:
            return StageResult("dynamic dims", False, 0.0, f"input {spec.name!r} is missing from the graph"), {}
        dynamic[spec.name] = [str(d) for d in dims if isinstance(d, str)]
        for i in spec.dynamic_dims:
            if i >= len(dims) or not isinstance(dims[i], str):
                pinned.append(f"{spec.name} dim {i} ({spec.shape[i]}) was made static")
    seconds = time.perf_counter() - started
    if pinned:
        return StageResult("dynamic dims", False, seconds, "; ".join(pinned)), dynamic
    shown = ", ".join(f"{name}: {format_dims(graph_inputs[name])}" for name in dynamic)
    return StageResult("dynamic dims", True, seconds, shown), dynamic


def check_parity(
    reference: Runner, candidate: Runner, cases: Sequence[ParityCase], tol: Tolerance, classifier: bool
) -> tuple[tuple[tuple[str, ParityReport], ...], str]:
    """Compare on every case; a run that raises (a pinned shape, say) ends the check with its reason."""
    reports = []
    for case in cases:
        try:
            expected = reference.infer(case.feeds)
        except Exception as exc:
            return tuple(reports), f"eager {reference.name} failed at {case.label}: {first_line(exc)}"
        try:
            got = candidate.infer(case.feeds)
        except Exception as exc:
            return tuple(reports), (
                f"onnxruntime failed at {case.label}: {first_line(exc)} (a dimension may have been made static; "
                "export with --static, or make the model's shapes follow its inputs)"
            )
        reports.append((case.label, compare(expected, got, tol, classifier, case.batch_size)))
    return tuple(reports), ""


def validate(
    path: Path,
    reference: Runner,
    specs: Sequence[TensorSpec],
    cases: Callable[[], Sequence[ParityCase]],
    tol: Tolerance = Tolerance(),
    classifier: bool = False,
    skipped: Sequence[str] = (),
) -> ValidationReport:
    """Run every stage in order; later stages run only where the earlier ones passed."""
    stages = [check_model(path)]
    stages.append(infer_shapes(path))
    dims_stage, dynamic = check_dynamic_dims(path, specs)
    stages.append(dims_stage)
    session_stage, runner = open_session(path)
    stages.append(session_stage)
    parity: tuple[tuple[str, ParityReport], ...] = ()
    if runner is not None:
        started = time.perf_counter()
        parity, failure = check_parity(reference, runner, cases(), tol, classifier)
        worst = max((p.max_abs_error for _, p in parity), default=0.0)
        passed = not failure and all(p.passed for _, p in parity)
        detail = failure or f"{len(parity)} cases, worst max abs error {worst:.3g}"
        stages.append(StageResult("parity", passed, time.perf_counter() - started, detail))
    return ValidationReport(tuple(stages), parity, dynamic, tuple(skipped))


def feeds_from_tensors(specs: Sequence[TensorSpec], tensors: Sequence[Any]) -> Feeds:
    return {spec.name: np.ascontiguousarray(t.detach().cpu().numpy()) for spec, t in zip(specs, tensors)}


__all__ = ["ParityCase", "StageResult", "ValidationReport", "validate"]


_callable_stage(__name__)  # `edgenn.validate(...)` works even after `import edgenn.validate`
