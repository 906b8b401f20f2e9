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
from edgenn.errors import EdgennError, first_line
from edgenn.parity import ParityReport, Tolerance, compare
from edgenn.runtime.session import OrtRunner, SessionConfig, open_session
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
    notes: tuple[str, ...] = ()  # why a provider's tolerance is what it is
    # parity on the other providers asked for (export --validate-on), labelled "openvino bf16, batch 7"
    provider_parity: tuple[tuple[str, ParityReport], ...] = ()

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.stages) and all(p.passed for _, p in (*self.parity, *self.provider_parity))

    @property
    def worst_max_abs_error(self) -> float:
        return max((p.max_abs_error for _, p in self.parity), default=0.0)

    @property
    def first_failure(self) -> str:
        for label, report in (*self.parity, *self.provider_parity):
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
            "provider_parity": [{"case": label, **p.to_dict()} for label, p in self.provider_parity],
            "dynamic_dims": self.dynamic_dims,
            "skipped": list(self.skipped),
            "notes": list(self.notes),
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


# How far another precision may move the outputs, and why: the reports carry the reason with the figures.
# bf16 was measured on the zoo (OpenVINO, AMD EPYC with avx512_bf16, digits test split): logits
# moved by up to 0.14 (LeNet-5, logits up to 49) and 0.10 relative to max(|logit|, 1), argmax
# agreement 100%. f16 (11 significant bits) moves them about 8x less.
PRECISION_TOLERANCES: dict[str, tuple[Tolerance, str]] = {
    "bf16": (
        Tolerance(atol=0.25, rtol=0.05),
        "bf16 keeps 8 significant bits (0.4% per rounding): over a network the logits move by up to ~1% "
        "of their scale (0.14 of LeNet-5's 49)",
    ),
    "f16": (
        Tolerance(atol=0.05, rtol=0.01),
        "f16 keeps 11 significant bits (0.05% per rounding), about 8x closer to f32 than bf16",
    ),
}


def tolerance_for(config: SessionConfig, f32: Tolerance) -> tuple[Tolerance, str]:
    """The parity tolerance on a provider at a precision, and the reason it is what it is."""
    if config.precision in PRECISION_TOLERANCES:
        return PRECISION_TOLERANCES[config.precision]
    return f32, "f32 on every provider: the same arithmetic, summed in another order"


def session_stage(path: Path, config: SessionConfig = SessionConfig()) -> tuple[StageResult, OrtRunner | None]:
    stage = "onnxruntime session" + ("" if config == SessionConfig() else f" ({config.label})")
    started = time.perf_counter()
    try:
        runner = open_session(path, config, name=path.name)
    except EdgennError as exc:
        return StageResult(stage, False, time.perf_counter() - started, str(exc)), None
    return StageResult(stage, True, time.perf_counter() - started, f"created on {runner.info.summary}"), runner


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
    on: Sequence[SessionConfig] = (),
) -> ValidationReport:
    """Run every stage in order; later stages run only where the earlier ones passed.

    Parity runs on the CPU provider, then on each configuration of `on` (another provider, another
    precision) with the tolerance `tolerance_for` gives it, its reason in the report's notes.
    """
    stages = [check_model(path)]
    stages.append(infer_shapes(path))
    dims_stage, dynamic = check_dynamic_dims(path, specs)
    stages.append(dims_stage)
    parity: list[tuple[str, ParityReport]] = []
    provider_parity: list[tuple[str, ParityReport]] = []
    notes: list[str] = []
    built: Sequence[ParityCase] | None = None
    for config in (SessionConfig(), *(c for c in on if c != SessionConfig())):
        stage, runner = session_stage(path, config)
        stages.append(stage)
        if runner is None:
            break
        built = cases() if built is None else built
        where = "" if config == SessionConfig() else config.label
        tolerance, why = (tol, "") if not where else tolerance_for(config, tol)
        started = time.perf_counter()
        got, failure = check_parity(reference, runner, built, tolerance, classifier)
        if where:
            provider_parity += [(f"{where}, {label}", report) for label, report in got]
        else:
            parity += got
        worst = max((p.max_abs_error for _, p in got), default=0.0)
        passed = not failure and all(p.passed for _, p in got)
        detail = failure or f"{len(got)} cases, worst max abs error {worst:.3g}"
        stages.append(
            StageResult(f"parity ({where})" if where else "parity", passed, time.perf_counter() - started, detail)
        )
        if where:
            notes.append(f"{where}: atol {tolerance.atol:g} + rtol {tolerance.rtol:g}, because {why}")
        if not passed:
            break
    return ValidationReport(tuple(stages), tuple(parity), dynamic, tuple(skipped), tuple(notes), tuple(provider_parity))


def feeds_from_tensors(specs: Sequence[TensorSpec], tensors: Sequence[Any]) -> Feeds:
    return {spec.name: np.ascontiguousarray(t.detach().cpu().numpy()) for spec, t in zip(specs, tensors)}


__all__ = ["ParityCase", "StageResult", "ValidationReport", "validate"]


_callable_stage(__name__)  # `edgenn.validate(...)` works even after `import edgenn.validate`
