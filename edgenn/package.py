"""`edgenn package`: a validated model (or a tuned deployment) made ready for its target, with the proof.

    result = package("models/lenet5/model.onnx", "lenet5-pkg", PackageOptions(format="ort"))
    result.manifest.files       # every file with its sha256; `edgenn verify lenet5-pkg` checks them

Three formats, one manifest (edgenn.runtime.manifest) and the same golden cases in each:
- bundle: the .onnx file, or the whole deployment folder `edgenn tune` wrote;
- ort: the model converted by onnxruntime's own converter (`convert_onnx_models_to_ort`), in the
  optimisation style asked, with the `required_operators.config` a reduced onnxruntime build takes;
- triton: a Triton model repository, `<name>/config.pbtxt` written with Triton's own schema and
  `<name>/1/model.onnx`.
The golden cases are real inputs (the digits test split for the zoo, the user's .npz, else seeded
random inputs) and the outputs the validated model gave on them: the .onnx file itself on the CPU
provider (what the ORT file and Triton's copy must reproduce), or each route of a deployment with
the candidate that serves it. The package is built beside OUT, verified there (a package that does
not verify on the machine that made it is never written), and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.errors import EdgennError, InputError, ModelFileError, first_line
from edgenn.fileio import check_folder_target, scratch_folder, staged_folder
from edgenn.runtime.deploy import DEPLOY_FILE, CandidateRecord, Deployment, load_deployment, this_machine
from edgenn.runtime.manifest import MANIFEST_FILE, GoldenCase, GoldenTolerance, Manifest, file_sha256, listed_files
from edgenn.runtime.model import Model
from edgenn.runtime.session import SessionConfig
from edgenn.runtime.verify import VerifyReport, verify_package
from edgenn.specs import META_LABELS, META_PREPROCESSING, TensorSpec

FORMATS = ("bundle", "ort", "triton")
ORT_STYLES = ("fixed", "runtime")
Step = Callable[[str], None]

# What golden outputs must be met within on a target: the same file, computed by another CPU's kernels.
F32_TOLERANCE = GoldenTolerance(
    "elementwise", 1e-4, 1e-3, why="float32: export's validation tolerance (the same sums in another order)"
)
F16_TOLERANCE = GoldenTolerance(
    "range", max_relative=0.01, why="float16/bfloat16: another CPU's kernels round differently, about 1% of the largest"
)
INT8_TOLERANCE = GoldenTolerance(
    "range", max_relative=0.02, why="int8: another CPU's int8 kernels may round a float output by a step or two"
)
_INT8_OPS = frozenset(
    {
        "QuantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeLSTM",
        "QGemm",
        "QLinearAdd",
        "DynamicQuantizeMatMul",
    }
)


@dataclass(frozen=True)
class PackageOptions:
    """How to package. `golden` is the samples of the larger golden case (a batch of 1 is the other)."""

    format: str = "bundle"
    ort_style: str = "fixed"  # fixed: optimised for this CPU now; runtime: optimisations replayed on the target
    type_reduction: bool = False  # ORT: the operators config lists the types each operator needs too
    name: str | None = None  # Triton's model name [the model's folder or file name]
    max_batch_size: int = 64  # Triton; 0: no batching, the model's own shapes
    instances: int = 1  # Triton instance_group count
    threads: int | None = None  # intra-op threads per session [a deployment's; Triton: the cores over instances]
    queue_delay_us: int = 100  # Triton dynamic batching: how long a request may wait for others
    golden: int = 8
    data: str | None = None  # .npz of inputs for the golden cases
    input_specs: tuple[TensorSpec, ...] = ()  # sizes of dynamic dims for random inputs
    seed: int = 0
    force: bool = False
    verbose: bool = False  # let onnxruntime's converter print its own lines

    def checked(self) -> PackageOptions:
        if self.format not in FORMATS:
            raise InputError(f"unknown package format {self.format!r}: use one of {', '.join(FORMATS)}")
        if self.ort_style not in ORT_STYLES:
            raise InputError(f"unknown ORT optimisation style {self.ort_style!r}: use fixed or runtime")
        if self.golden < 1:
            raise InputError("--golden must be at least 1 sample")
        if self.max_batch_size < 0 or self.instances < 1 or (self.threads is not None and self.threads < 1):
            raise InputError("--max-batch-size must be 0 or more, --instances and --threads 1 or more")
        if self.name is not None and not _triton_name_ok(self.name):
            raise InputError(
                f"--name {self.name!r}: a Triton model name starts with a letter or digit and holds letters, digits, "
                f"'-', '_' and '.', and is not {MANIFEST_FILE} or golden.*"
            )
        return self


@dataclass(frozen=True)
class PackageResult:
    folder: str
    manifest: Manifest
    sizes: tuple[tuple[str, int], ...]  # every file of the package, bytes
    operators: tuple[str, ...]  # ORT: the operators config's lines (domain;opset;ops)
    verify: VerifyReport  # made on the staged package before it was renamed into place
    seconds: float
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        digests = dict(self.manifest.files)
        return {
            "folder": self.folder,
            "kind": self.manifest.kind,
            "model": self.manifest.model,
            "files": [{"path": p, "bytes": b, "sha256": digests.get(p)} for p, b in self.sizes],
            "operators": list(self.operators),
            "golden": [c.to_dict() for c in self.manifest.golden],
            "manifest": self.manifest.to_dict(),
            "verify": self.verify.to_dict(),
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


@dataclass
class _Source:
    """What is being packaged: one .onnx file, or a deployment and the file chosen from it."""

    path: Path  # the .onnx file whose specs, metadata and golden outputs the package carries
    session: SessionConfig  # the session the golden outputs are made with, and the package records
    deployment: Deployment | None = None
    folder: Path | None = None  # the deployment folder
    candidate: CandidateRecord | None = None  # ort/triton from a deployment: the candidate packaged
    notes: list[str] = field(default_factory=list)

    @cached_property
    def precision(self) -> str:
        """What the file computes in (read from its graph once)."""
        return _precision(self.path)


@dataclass(frozen=True)
class _Payload:
    """The model files written for a format, and what the manifest says of them."""

    model: str  # the model's path in the package
    model_format: str  # onnx | ort | deployment
    ort: Mapping[str, Any] = field(default_factory=dict)
    triton: Mapping[str, Any] = field(default_factory=dict)
    operators: tuple[str, ...] = ()
    config_entries: tuple[tuple[str, str], ...] = ()  # what the target's session needs to load it


def package(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: PackageOptions = PackageOptions(),
    on_step: Step | None = None,
) -> PackageResult:
    """Package `source` (a .onnx file or a deployment folder) as `options.format` into the folder `out`."""
    step = on_step or (lambda _text: None)
    options = options.checked()
    started = time.perf_counter()
    out = check_folder_target(out, options.force, MANIFEST_FILE, "package", InputError)
    src = _open_source(Path(source), out, options)
    _check_onnx(src.path)
    with staged_folder(out) as staging:
        manifest, payload, report = _build(staging, src, options, step)
        sizes = tuple((p, (staging / p).stat().st_size) for p, _ in manifest.files)
        sizes += ((MANIFEST_FILE, (staging / MANIFEST_FILE).stat().st_size),)
    report = replace(report, folder=str(out))
    return PackageResult(
        str(out), manifest, sizes, payload.operators, report, time.perf_counter() - started, tuple(src.notes)
    )


def _build(staging: Path, src: _Source, options: PackageOptions, step: Step) -> tuple[Manifest, _Payload, VerifyReport]:
    """The package written in `staging` and verified there."""
    payload = None
    if options.format == "ort":  # the converter first: what it refuses, it names better than a session would
        payload = _write_ort(staging, src, options, step)
    step(f"opening {src.path.name}")
    reference = Model(src.path, config=src.session)
    _check_input_specs(reference, options.input_specs)
    if options.format == "triton" and options.max_batch_size > 0:
        from edgenn.runtime.triton import batch_problem

        problem = batch_problem(reference.inputs, reference.outputs)
        if problem:
            raise InputError(
                f"{src.path} cannot be batched by Triton: {problem}; export it with a dynamic batch, or pass "
                "--max-batch-size 0 to serve its fixed shapes without batching"
            )
    if payload is None:
        if options.format == "bundle":
            payload = _write_bundle(staging, src)
        else:
            payload = _write_triton(staging, src, reference, options)
    step("running the golden cases")
    cases, data_source = _golden_cases(staging, src, reference, options, payload)
    manifest = _manifest(staging, src, reference, options, payload, cases, data_source)
    (staging / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    step("verifying the package")
    report = verify_package(staging, seconds=0.02)
    if not report.passed:
        raise EdgennError(f"the package does not verify on the machine that made it: {report.failures[0]}")
    return manifest, payload, report


# -------------------------------------------------------------------------------------- sources
def _open_source(path: Path, out: Path, options: PackageOptions) -> _Source:
    if not path.exists():
        raise ModelFileError(f"model not found: {path}; give a .onnx file or a folder edgenn tune wrote")
    threads = options.threads
    if options.format == "triton" and threads is None and not path.is_dir():
        # each instance is a session with its own thread pool: without a cap, N instances take N x the cores
        threads = max(1, this_machine().cores // options.instances)
    if not path.is_dir():
        return _Source(path, SessionConfig("cpu", threads=threads))
    if out.resolve().is_relative_to(path.resolve()):
        raise InputError(f"the package {str(out)!r} would be inside the deployment it packages; write it elsewhere")
    deployment = load_deployment(path)
    if options.format == "bundle":
        fp32 = next((c for c in deployment.candidates if c.recipe == "fp32" and c.shipped), None)
        if fp32 is None:
            raise ModelFileError(f"{path / DEPLOY_FILE} ships no fp32 file; re-run edgenn tune")
        return _Source(path / fp32.file, SessionConfig("cpu", threads=threads), deployment, path)
    return _chosen_candidate(path, deployment, options, threads)


def _chosen_candidate(folder: Path, deployment: Deployment, options: PackageOptions, threads: int | None) -> _Source:
    """ORT and Triton take one file: what the deployment runs at the batch their target sees, among the
    candidates that target can express (ORT: the CPU provider at f32; Triton: its accelerators)."""
    from edgenn.runtime import triton

    profile = deployment.profiles[0]
    batch = 1 if options.format == "ort" else max(1, options.max_batch_size)
    route = next((r for r in profile.routes if r.covers(batch)), profile.routes[-1])

    def fits(c: CandidateRecord) -> bool:
        s = c.session
        if not c.shipped or s.disabled_optimizers or s.config_entries or s.device is not None or s.precision != "f32":
            return False
        if options.format == "ort":
            return s.provider == "cpu" and s.graph_optimization == "all"
        return s.provider in ("cpu", "openvino", "cuda", "tensorrt") and s.graph_optimization in triton.GRAPH_LEVELS

    ranked = [deployment.candidate(c) for c in route.ranking]
    fp32 = [c for c in deployment.candidates if c.recipe == "fp32"]
    chosen = next((c for c in [*ranked, *fp32] if fits(c)), None)
    if chosen is None:
        raise ModelFileError(
            f"{folder / DEPLOY_FILE} ships no candidate {options.format} can express (plain sessions at f32); "
            "package its fp32 .onnx file instead"
        )
    target = "the CPU provider at batch 1" if options.format == "ort" else f"batch {batch}"
    note = f"from deployment {folder}: {chosen.id}, tune's first choice for {target} at {profile.threads} thread(s)"
    if chosen.id != route.choice:
        note = (
            f"from deployment {folder}: {chosen.id}, the first candidate {options.format} can express for {target} "
            f"at {profile.threads} thread(s) (tune chose {route.choice})"
        )
    # Triton is told the candidate's provider in its config; the golden outputs are the CPU provider's,
    # which every target of the file can reproduce
    session = SessionConfig(
        "cpu", threads=threads or profile.threads, graph_optimization=chosen.session.graph_optimization
    )
    return _Source(folder / chosen.file, session, deployment, folder, chosen, [note])


def _check_onnx(path: Path) -> None:
    """One line where the file is not a valid ONNX model (before a converter or a session names it obscurely)."""
    import onnx

    if not path.is_file():
        raise ModelFileError(f"{path} is not a file; give a .onnx model or a folder edgenn tune wrote")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError, and others for truncated files
        raise ModelFileError(f"{path} is not an ONNX model (it does not parse); give a .onnx file") from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(f"{path} is not a valid ONNX model: {first_line(exc, 200)}; export it again") from None


def _precision(path: Path) -> str:
    """What the file computes in: int8 where it quantizes, f16 where it holds float16 weights, else f32."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if any(n.op_type in _INT8_OPS for n in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "f16"
    return "f32"


def _tolerance(precision: str, session_precision: str = "f32") -> GoldenTolerance:
    if precision == "int8":
        return INT8_TOLERANCE
    if precision == "f16" or session_precision in ("bf16", "f16"):
        return F16_TOLERANCE
    return F32_TOLERANCE


# -------------------------------------------------------------------------------------- payloads
def _write_bundle(staging: Path, src: _Source) -> _Payload:
    if src.folder is not None:
        shutil.copytree(src.folder, staging / "deploy")
        return _Payload("deploy", "deployment")
    shutil.copyfile(src.path, staging / "model.onnx")
    return _Payload("model.onnx", "onnx")


def _write_ort(staging: Path, src: _Source, options: PackageOptions, step: Step) -> _Payload:
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    from edgenn.quiet import silenced
    from edgenn.runtime.session import clean_ort_message

    style = OptimizationStyle.Fixed if options.ort_style == "fixed" else OptimizationStyle.Runtime
    # the converter reads its optimisation level from the environment (default all)
    level = os.environ.get("ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL", "all")
    step(f"converting to ORT format ({options.ort_style} style, level {level})")
    config_name = "required_operators_and_types.config" if options.type_reduction else "required_operators.config"
    with scratch_folder("ort") as work:
        model = Path(work) / "in" / "model.onnx"
        model.parent.mkdir()
        shutil.copyfile(src.path, model)
        try:
            with silenced(not options.verbose):
                convert_onnx_models_to_ort(
                    model,
                    output_dir=Path(work) / "out",
                    optimization_styles=[style],
                    enable_type_reduction=options.type_reduction,
                )
        except Exception as exc:  # the converter raises what onnxruntime raised when it refused the model
            message = clean_ort_message(first_line(exc, 400))
            raise ModelFileError(f"onnxruntime's ORT converter refused {src.path}: {message}") from None
        converted = sorted((Path(work) / "out").glob("*.ort"))
        configs = sorted((Path(work) / "out").glob("*.config"))
        if len(converted) != 1 or len(configs) != 1:
            raise ModelFileError(f"onnxruntime's ORT converter wrote no ORT file for {src.path}")
        shutil.copyfile(converted[0], staging / "model.ort")
        # the converter names the files it read by their temporary paths: the package's own name instead,
        # so that packaging a file twice writes the same bytes
        text = configs[0].read_text(encoding="utf-8").replace(str(converted[0]), "model.ort")
        (staging / config_name).write_text(text, encoding="utf-8")
    lines = (staging / config_name).read_text(encoding="utf-8").splitlines()
    operators = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    if options.ort_style == "fixed":
        note = (
            f"fixed style: optimised at level {level} on the packaging machine (see machine); at level all "
            "onnxruntime's layout for that CPU (NCHWc blocks on x86) is baked in"
        )
        entries: tuple[tuple[str, str], ...] = ()
    else:
        note = (
            "runtime style: the optimisations are saved and replayed on the target "
            "(session.enable_saved_runtime_optimizations=1), which fits them to its CPU"
        )
        entries = (("session.enable_saved_runtime_optimizations", "1"),)
    ort_info = {
        "style": options.ort_style,
        "optimization_level": level,
        "type_reduction": options.type_reduction,
        "operators_config": config_name,
        "operators": list(operators),
        "converted_from": src.path.name,
        "note": note,
    }
    return _Payload("model.ort", "ort", ort=ort_info, operators=operators, config_entries=entries)


def _write_triton(staging: Path, src: _Source, reference: Model, options: PackageOptions) -> _Payload:
    from edgenn.runtime import triton

    name = options.name or _default_name(src)
    if not _triton_name_ok(name):
        raise InputError(f"{name!r} is not a Triton model name (letters, digits, '-', '_', '.'): pass --name")
    provider = src.candidate.session.provider if src.candidate is not None else "cpu"
    accelerator = {"openvino": "openvino", "tensorrt": "tensorrt"}.get(provider)
    labels = bool(reference.metadata.get(META_LABELS)) and bool(reference.labels)
    tuned = src.deployment.options.get("batches", ()) if src.deployment is not None else ()
    config = triton.model_config(
        name,
        reference.inputs,
        reference.outputs,
        options.max_batch_size,
        instances=options.instances,
        threads=src.session.threads,
        max_queue_delay_us=options.queue_delay_us,
        preferred_batch_sizes=tuple(b for b in tuned if isinstance(b, int)),
        labels=labels,
        accelerator=accelerator,
        graph_level=triton.GRAPH_LEVELS.get(src.session.graph_optimization),
        gpu=provider in ("cuda", "tensorrt"),
    )
    model_dir = staging / name
    (model_dir / "1").mkdir(parents=True)
    shutil.copyfile(src.path, model_dir / "1" / "model.onnx")
    text = triton.config_text(config)
    triton.parse_config(text)  # what Triton will read must parse with its own schema
    (model_dir / triton.CONFIG_FILE).write_text(text, encoding="utf-8")
    if labels:
        (model_dir / triton.LABELS_FILE).write_text("\n".join(reference.labels) + "\n", encoding="utf-8")
    info = {
        "name": name,
        "config": f"{name}/{triton.CONFIG_FILE}",
        "max_batch_size": options.max_batch_size,
        "instances": options.instances,
        "threads": src.session.threads,
        "provider": provider,
        "accelerator": accelerator,
        "labels": f"{name}/{triton.LABELS_FILE}" if labels else None,
    }
    return _Payload(f"{name}/1/model.onnx", "onnx", triton=info)


def _default_name(src: _Source) -> str:
    """The model's folder name where the file or folder is named generically (models/lenet5/model.onnx,
    models/lenet5/model.quant.onnx and models/lenet5/deploy are all "lenet5"), else the file's stem."""
    path = src.folder if src.folder is not None else src.path
    name = path.name if src.folder is not None else path.name.split(".")[0]
    if name in ("model", "deploy") and path.resolve().parent.name:
        name = path.resolve().parent.name
    return name if _triton_name_ok(name) else re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("._-") or "model"


def _triton_name_ok(name: str) -> bool:
    """A name Triton takes for a model folder, and that no file of the package's top level has."""
    ours = name == MANIFEST_FILE or name.startswith("golden.")
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name)) and not ours


# -------------------------------------------------------------------------------------- golden
def _golden_batches(
    reference: Model, src: _Source, options: PackageOptions, sizes: Mapping[str, int]
) -> list[tuple[int, str]]:
    """(batch, candidate) of each golden case: 1 and --golden for a file; each route of a deployment's
    default thread count; one case of the model's own shapes where no input has a dynamic batch dim."""
    if not _batched(reference.inputs, sizes):
        first = reference.inputs[0].shape[0] if reference.inputs and reference.inputs[0].shape else 1
        return [(int(first) if isinstance(first, int) else 1, "")]
    if src.deployment is not None and src.candidate is None:
        profile = src.deployment.profiles[0]
        return [((r.measured_at or (r.batch_min,))[0], r.choice) for r in profile.routes]
    cap = options.max_batch_size if options.format == "triton" and options.max_batch_size > 0 else options.golden
    return [(b, "") for b in sorted({1, min(options.golden, cap)})]


def _batched(specs: tuple[TensorSpec, ...], sizes: Mapping[str, int]) -> list[TensorSpec]:
    """The inputs whose first dim is the dynamic batch (a named dim of no known size): the ones golden
    cases cut and repeat; an input such as a bias of shape (len,) is kept whole."""
    return [s for s in specs if s.shape and isinstance(s.shape[0], str) and s.shape[0] not in sizes]


def _dim_sizes(reference: Model, options: PackageOptions) -> dict[str, int]:
    """The sizes of the model's named dims other than the batch: stored at export, or given by --input."""
    from edgenn.calibration import dim_sizes_of, sizes_from_specs

    return {**dim_sizes_of(reference.metadata), **sizes_from_specs(tuple(reference.inputs), options.input_specs)}


def _check_input_specs(reference: Model, given: tuple[TensorSpec, ...]) -> None:
    """--input names one of the model's inputs, with its rank: one that fits nothing is a mistake to say."""
    by_name = {s.name: s for s in reference.inputs}
    for spec in given:
        model = by_name.get(spec.name)
        if model is None:
            inputs = ", ".join(map(str, reference.inputs))
            raise InputError(f"--input {spec}: the model has no input {spec.name!r} (its inputs: {inputs})")
        if len(model.shape) != len(spec.shape):
            raise InputError(f"--input {spec}: input {model.name!r} has {len(model.shape)} dims ({model})")


def _golden_inputs(
    reference: Model, options: PackageOptions, count: int, sizes: Mapping[str, int]
) -> tuple[dict[str, np.ndarray], str]:
    """`count` samples of real inputs where edgenn knows some (the user's .npz, the digits test split),
    else seeded random ones: inputs without a batch dim are kept whole."""
    from edgenn.calibration import model_inputs

    specs = tuple(reference.inputs)
    samples = model_inputs(
        specs, reference.preprocessing, sizes, options.data, options.input_specs, options.seed, count, "--data"
    )
    batched = {s.name for s in _batched(specs, sizes)}
    feeds = {}
    for name, array in samples.feeds.items():
        if name in batched and len(array) != count:
            array = array[np.arange(count) % len(array)]  # fewer samples than asked: cycled through
        feeds[name] = np.ascontiguousarray(array)
    return feeds, samples.source


def _golden_cases(
    staging: Path, src: _Source, reference: Model, options: PackageOptions, payload: _Payload
) -> tuple[tuple[GoldenCase, ...], str]:
    sizes = _dim_sizes(reference, options)
    batches = _golden_batches(reference, src, options, sizes)
    samples, data_source = _golden_inputs(reference, options, max(b for b, _ in batches), sizes)
    batched = {s.name for s in _batched(reference.inputs, sizes)}
    deployment = Model(staging / payload.model) if payload.model_format == "deployment" else None
    precisions: dict[Path, str] = {src.path: src.precision}
    cases = []
    for index, (batch, recorded) in enumerate(batches):
        feeds = {n: a[:batch] if n in batched else a for n, a in samples.items()}
        if deployment is not None:
            outputs = deployment.predict(feeds)
            route = deployment.route_for(batch)
            assert route is not None  # a deployment routes every batch size
            if route.path not in precisions:
                precisions[route.path] = _precision(route.path)
            tolerance = _tolerance(precisions[route.path], route.config.precision)
            candidate = route.candidate.id
        else:
            outputs = reference.predict(feeds)
            tolerance, candidate = _tolerance(precisions[src.path], src.session.precision), recorded
        inputs, outs = [], []
        for k, (name, array) in enumerate(feeds.items()):
            np.save(staging / f"golden.{index}.in.{k}.npy", array)
            inputs.append((name, f"golden.{index}.in.{k}.npy"))
        for k, (name, array) in enumerate(outputs.items()):
            np.save(staging / f"golden.{index}.out.{k}.npy", np.asarray(array))
            outs.append((name, f"golden.{index}.out.{k}.npy"))
        name = f"batch {batch}" if batched else "fixed shapes"
        cases.append(GoldenCase(name, batch, tuple(inputs), tuple(outs), tolerance, candidate))
    return tuple(cases), data_source


# -------------------------------------------------------------------------------------- manifest
def _manifest(
    staging: Path,
    src: _Source,
    reference: Model,
    options: PackageOptions,
    payload: _Payload,
    cases: tuple[GoldenCase, ...],
    data_source: str,
) -> Manifest:
    from edgenn.versions import edgenn_version

    preprocessing = reference.metadata.get(META_PREPROCESSING)
    session = src.session
    if payload.config_entries:
        session = replace(session, config_entries=(*session.config_entries, *payload.config_entries)).checked()
    source: dict[str, Any] = {"path": str(src.path), "sha256": file_sha256(src.path), "golden_inputs": data_source}
    if src.folder is not None:
        source.update(deployment=str(src.folder), deployment_sha256=file_sha256(src.folder / DEPLOY_FILE))
    if src.candidate is not None:
        source["candidate"] = src.candidate.id
    return Manifest(
        kind=options.format,
        model=payload.model,
        model_format=payload.model_format,
        inputs=tuple(reference.inputs),
        outputs=tuple(reference.outputs),
        session=session,
        golden=cases,
        files=listed_files(staging),
        labels=tuple(reference.labels) if reference.metadata.get(META_LABELS) else None,
        preprocessing=json.loads(preprocessing) if preprocessing else None,
        precision=src.precision,
        source=source,
        machine=this_machine().to_dict(),
        ort=payload.ort,
        triton=payload.triton,
        notes=tuple(src.notes),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        edgenn_version=edgenn_version(),
    )


__all__ = ["FORMATS", "PackageOptions", "PackageResult", "package"]
