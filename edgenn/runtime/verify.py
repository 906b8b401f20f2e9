"""`edgenn verify`: prove, on the target, that a package is what was validated and computes what it did.

    report = verify_package("lenet5-pkg")   # VerifyReport: checks, golden outcomes, latency here
    report.passed                            # every hash, the load, the config and every golden output

It loads the model the way the target would: a bundle through `Model` (a tuned deployment folder
with its routes), an ORT-format file through onnxruntime with `session.load_model_format=ORT`, a
Triton repository by parsing config.pbtxt with Triton's schema, checking it against the model
beside it, and running that model with the config's thread count. numpy and onnxruntime only
(a Triton package also needs tritonclient, for the schema).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.errors import EdgennError
from edgenn.runtime.deploy import Machine, this_machine
from edgenn.runtime.manifest import MANIFEST_FILE, GoldenOutcome, Manifest, check_golden, file_problems, load_array
from edgenn.runtime.manifest import read_manifest as read_manifest
from edgenn.runtime.model import Model
from edgenn.runtime.session import SessionConfig
from edgenn.tables import table
from edgenn.timing import time_calls

ORT_FORMAT_ENTRY = ("session.load_model_format", "ORT")


@dataclass(frozen=True)
class Check:
    """One thing verify proves: a file's hash, the load, the config."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class CaseResult:
    """One golden case run here: each output's outcome and the latency of the call."""

    name: str
    batch: int
    tolerance: str
    outputs: tuple[GoldenOutcome, ...]
    median_ms: float | None
    runs: int
    served_by: str = ""  # the candidate that ran it (a tuned deployment), else the session's summary

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch": self.batch,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "outputs": [o.to_dict() for o in self.outputs],
            "median_ms": self.median_ms,
            "runs": self.runs,
            "served_by": self.served_by,
        }


@dataclass(frozen=True)
class VerifyReport:
    folder: str
    kind: str
    model: str
    checks: tuple[Check, ...]
    cases: tuple[CaseResult, ...]
    session: str  # where it ran here, read back from onnxruntime
    machine: str
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.checks) and all(c.passed for c in self.cases)

    @property
    def failures(self) -> list[str]:
        """One line per thing that did not hold, the first naming the file where a file is at fault."""
        lines = [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]
        for case in self.cases:
            for out in case.outputs:
                if not out.passed:
                    figures = (
                        out.reason or f"max abs error {out.max_abs_error:.3g}, {out.relative_to_range:.3g} of range"
                    )
                    lines.append(f"golden {case.name}, output {out.name!r}: {figures}; allowed: {case.tolerance}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "kind": self.kind,
            "model": self.model,
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
            "cases": [c.to_dict() for c in self.cases],
            "session": self.session,
            "machine": self.machine,
            "notes": list(self.notes),
            "failures": self.failures,
        }


def verify_package(
    folder: str | os.PathLike[str], threads: int | None = None, seconds: float = 0.25, machine: Machine | None = None
) -> VerifyReport:
    """Check every file of the package at `folder`, load its model as its target would, run its golden
    cases and time them here. A package that cannot be read at all raises ModelFileError; everything
    else that does not hold is in the report (its `passed` is False)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    here = machine or this_machine()
    checks = [Check(f"file {name}", False, problem) for name, problem in file_problems(folder, manifest)]
    if not checks:
        checks.append(Check("files", True, f"{len(manifest.files)} files, every sha256 as packaged"))
    else:
        # the golden cases of a damaged package prove nothing: the first line names the file at fault
        return VerifyReport(str(folder), manifest.kind, manifest.model, tuple(checks), (), "", _machine_text(here))
    notes = list(_machine_notes(manifest, here))
    try:
        model, load_check = _load(folder, manifest, threads, notes)
    except EdgennError as exc:
        checks.append(Check("load", False, str(exc)))
        return VerifyReport(
            str(folder), manifest.kind, manifest.model, tuple(checks), (), "", _machine_text(here), tuple(notes)
        )
    checks.extend(load_check)
    checks.append(_spec_check(manifest, model))
    cases = tuple(_run_case(folder, manifest, case, model, seconds) for case in manifest.golden)
    notes.extend(model.deployment_notes)
    return VerifyReport(
        str(folder),
        manifest.kind,
        manifest.model,
        tuple(checks),
        cases,
        model.session_info.summary,
        _machine_text(here),
        tuple(notes),
    )


# ------------------------------------------------------------------------------------- loading
def _load(folder: Path, manifest: Manifest, threads: int | None, notes: list[str]) -> tuple[Model, list[Check]]:
    """The model opened as the package's target opens it, and what that proved."""
    from edgenn.runtime.manifest import safe_path

    path = safe_path(folder, manifest.model)
    config = manifest.session
    if threads is not None:
        config = replace(config, threads=threads)
    if manifest.model_format == "deployment":
        model = Model(path, threads=threads)
        return model, [Check("load", True, f"deployment {manifest.model}: {len(model.routes)} route(s)")]
    if manifest.model_format == "ort":
        config = replace(config, config_entries=(*config.config_entries, ORT_FORMAT_ENTRY))
        model = Model(path, config=config)
        entries = ", ".join(f"{k}={v}" for k, v in config.config_entries)
        return model, [Check("load", True, f"{manifest.model} as ORT format ({entries})")]
    if manifest.kind == "triton":
        return _load_triton(folder, manifest, path, config, threads, notes)
    model = Model(path, config=config)
    return model, [Check("load", True, f"{manifest.model}")]


def _load_triton(
    folder: Path, manifest: Manifest, path: Path, config: SessionConfig, threads: int | None, notes: list[str]
) -> tuple[Model, list[Check]]:
    from edgenn.runtime import triton
    from edgenn.runtime.manifest import safe_path

    name = str(manifest.triton.get("name", ""))
    config_path = safe_path(folder, str(manifest.triton.get("config", f"{name}/{triton.CONFIG_FILE}")))
    parsed = triton.parse_config(config_path.read_text(encoding="utf-8"), str(config_path))
    checks = [Check("triton config", True, f"{config_path.relative_to(folder)} parses with Triton's model_config")]
    expected = Path(name) / "1" / "model.onnx"
    if parsed.name != name or Path(manifest.model) != expected:
        checks.append(
            Check("triton layout", False, f"config names model {parsed.name!r}; the repository holds {manifest.model}")
        )
    config_threads = triton.config_threads(parsed)
    level = {v: k for k, v in triton.GRAPH_LEVELS.items()}.get(
        parsed.optimization.graph.level if parsed.optimization.HasField("graph") else None, "all"
    )
    run_config = replace(config, threads=threads or config_threads, graph_optimization=level)
    model = Model(path, config=run_config)
    problems = triton.check_config(parsed, model.inputs, model.outputs)
    if any(c.batch > parsed.max_batch_size for c in manifest.golden) and parsed.max_batch_size > 0:
        problems.append(f"a golden batch is larger than max_batch_size {parsed.max_batch_size}")
    checks.append(
        Check(
            "triton config fits the model",
            not problems,
            "; ".join(problems)
            or f"max_batch_size {parsed.max_batch_size}, {len(parsed.input)} input(s), {len(parsed.output)} output(s)",
        )
    )
    accelerators = parsed.optimization.execution_accelerators
    asked = [a.name for a in (*accelerators.cpu_execution_accelerator, *accelerators.gpu_execution_accelerator)]
    gpu = any(g.kind == triton.schema().ModelInstanceGroup.KIND_GPU for g in parsed.instance_group)
    if asked or gpu:
        what = ", ".join(asked) if asked else "a GPU"
        notes.append(f"the config asks Triton for {what}; verify ran the model on this machine's CPU provider")
    return model, checks


def _spec_check(manifest: Manifest, model: Model) -> Check:
    """The model's inputs and outputs are the ones packaged (names, dims, dtypes)."""
    got = (tuple(model.inputs), tuple(model.outputs))
    if got == (manifest.inputs, manifest.outputs):
        return Check(
            "specs", True, ", ".join(map(str, manifest.inputs)) + " -> " + ", ".join(map(str, manifest.outputs))
        )
    return Check(
        "specs",
        False,
        f"the model takes {', '.join(map(str, got[0]))} -> {', '.join(map(str, got[1]))}; the manifest says "
        f"{', '.join(map(str, manifest.inputs))} -> {', '.join(map(str, manifest.outputs))}",
    )


# ------------------------------------------------------------------------------------- running
def _run_case(folder: Path, manifest: Manifest, case: Any, model: Model, seconds: float) -> CaseResult:
    feeds = {name: load_array(folder, file) for name, file in case.inputs}
    try:
        got = model.predict(feeds)
    except EdgennError as exc:
        failed = tuple(GoldenOutcome(n, (), float("inf"), float("inf"), False, str(exc)) for n, _ in case.outputs)
        return CaseResult(case.name, case.batch, case.tolerance.describe(), failed, None, 0)
    outcomes = []
    for name, file in case.outputs:
        if name not in got:
            outcomes.append(
                GoldenOutcome(name, (), float("inf"), float("inf"), False, "the model gives no such output")
            )
            continue
        outcomes.append(check_golden(name, load_array(folder, file), got[name], case.tolerance))
    member = model.member_for(case.batch)
    route = model.route_for(case.batch)
    served = route.candidate.id if route is not None else member.session_info.summary

    def call() -> Any:
        return member.predict(feeds)

    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-6)
    runs = int(min(200, max(5, seconds / once)))
    times = time_calls(call, runs)
    median_ms = float(np.median(times)) / 1e6
    return CaseResult(case.name, case.batch, case.tolerance.describe(), tuple(outcomes), median_ms, runs, served)


# ------------------------------------------------------------------------------------ rendering
def render_verify(report: VerifyReport) -> str:
    """Each check, then each golden case with its error and its latency here."""
    lines = [f"{report.folder}: {report.kind} package, {report.model}; on {report.machine}"]
    if report.session:
        lines[0] += f", {report.session}"
    lines.append(
        table(["check", "ok", "detail"], [(c.name, "yes" if c.passed else "NO", c.detail) for c in report.checks])
    )
    if report.cases:
        rows = []
        for case in report.cases:
            for out in case.outputs:
                rows.append(
                    (
                        case.name,
                        out.name,
                        out.max_abs_error,
                        out.relative_to_range,
                        "yes" if out.passed else "NO" + (f" ({out.reason})" if out.reason else ""),
                        "-" if case.median_ms is None else case.median_ms,
                        case.served_by,
                    )
                )
        lines += ["", table(["golden", "output", "max abs", "rel to max |golden|", "ok", "median ms", "ran on"], rows)]
        lines += [f"tolerance: {tolerance}" for tolerance in dict.fromkeys(c.tolerance for c in report.cases)]
    lines += [f"note: {n}" for n in report.notes]
    lines.append(
        "verified" if report.passed else f"NOT verified: {report.failures[0] if report.failures else 'no golden case'}"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- machines
def _machine_text(machine: Machine) -> str:
    return f"{machine.cpu_model}, {machine.cores} cores"


def _machine_notes(manifest: Manifest, here: Machine) -> list[str]:
    """Where this machine differs from the packaging one in a way an ORT-format file cares about."""
    if not manifest.ort or not manifest.machine:
        return []
    try:
        packed = Machine.from_dict(manifest.machine)
    except (KeyError, TypeError, ValueError):
        return ["the packaging machine is not recorded in the manifest"]
    notes = []
    if manifest.ort.get("style") == "fixed" and (packed.cpu_model, packed.cpu_flags) != (
        here.cpu_model,
        here.cpu_flags,
    ):
        made = packed.cpu_model + ("" if packed.cpu_model != here.cpu_model else " with other flags")
        notes.append(
            f"the ORT file's fixed optimisations were made on {made}, and this CPU is {here.cpu_model}: the "
            "golden cases say whether it computes the same here; an --ort-style runtime package fits them to the "
            "target"
        )
    wrote, runs = dict(packed.libraries).get("onnxruntime"), dict(here.libraries).get("onnxruntime")
    if wrote and runs and wrote != runs:
        notes.append(
            f"the ORT file was written by onnxruntime {wrote} and runs on {runs} here: onnxruntime promises to "
            "read the ORT files of its own and older versions; a newer one loads where its ORT format is unchanged"
        )
    return notes


def _positive(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """`edgenn verify` where only the runtime is installed (no click): `python -m edgenn.runtime.verify PACKAGE`."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="edgenn verify", description=main.__doc__)
    parser.add_argument("package")
    parser.add_argument("--threads", type=_positive, help="intra-op threads [the package's]")
    parser.add_argument("--seconds", type=float, default=0.25, help="timing per golden case")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    parser.add_argument("--json-out", metavar="FILE", help="the report as JSON in FILE too")
    args = parser.parse_args(argv)
    try:
        report = verify_package(args.package, threads=args.threads, seconds=args.seconds)
    except EdgennError as exc:
        print(
            json.dumps({"error": str(exc), "exit_code": 1}) if args.json else f"Error: {exc}",
            file=sys.stdout if args.json else sys.stderr,
        )
        return 1
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump(report.to_dict(), handle, indent=2)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_verify(report))
        if not report.passed:
            print(
                f"Error: {args.package} does not verify: {(report.failures or ['no golden case'])[0]}", file=sys.stderr
            )
    return 0 if report.passed else 3


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["MANIFEST_FILE", "CaseResult", "Check", "VerifyReport", "read_manifest", "verify_package"]
