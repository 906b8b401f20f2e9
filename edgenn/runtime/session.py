"""The one place that opens onnxruntime sessions: a typed configuration in, a ready runner out.

    runner = open_session("lenet5.onnx", SessionConfig(provider="openvino", precision="bf16", threads=1))
    runner.infer({"input": batch})          # {"output": array}
    runner.info.summary                     # what it really ran on: provider, device, precision, nodes

Export validation, quantize's evaluation, bench and `edgenn.runtime.Model` all open their sessions
here, so a provider, a precision or a session option means the same thing everywhere, and every
failure comes back as one line naming the model and the provider. numpy and onnxruntime only.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.errors import InputError, ModelFileError, ModelWarning, ProviderError
from edgenn.runtime import integrity
from edgenn.runtime import providers as _providers
from edgenn.runtime.inputs import ORT_TYPES
from edgenn.runtime.integrity import FileFacts
from edgenn.runtime.providers import CPU, PROVIDERS, Device
from edgenn.specs import META_INPUTS, META_OUTPUTS, TensorSpec

GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "layout", "all")
_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}
CONFIG_VERSION = 1
MEMORY_MODES = ("arena", "lean")
METADATA_MODES = ("strict", "ignore")


# ---------------------------------------------------------------------------------- the config
@dataclass(frozen=True)
class SessionConfig:
    """Everything that decides how a model runs, short of the model file itself.

    `provider` is a short name (cpu, openvino, cuda, tensorrt) or "auto" (TensorRT, CUDA, OpenVINO,
    then the CPU, the first present). `device` picks among a provider's devices (OpenVINO: CPU, GPU,
    GPU.1, NPU; CUDA and TensorRT: the device id); None takes its default. `precision` is what the
    provider computes in: f32 runs the model's own types; bf16 and f16 are offered where the device
    has them. `threads` caps the intra-op threads (None: the provider's default, every core).
    `fallback` lets the CPU provider take over where the provider is missing or refuses nodes; the
    session's info then says so. `memory` is "arena" (onnxruntime's default: the CPU allocator keeps
    what the largest batch needed, for speed) or "lean" (no arena: memory goes back after each call).
    """

    provider: str = "cpu"
    device: str | None = None
    precision: str = "f32"
    threads: int | None = None
    graph_optimization: str = "all"  # disable | basic | extended | layout | all
    disabled_optimizers: tuple[str, ...] = ()  # onnxruntime graph transformers to skip, by name
    config_entries: tuple[tuple[str, str], ...] = ()  # SessionOptions.add_session_config_entry(key, value)
    provider_options: tuple[tuple[str, str], ...] = ()  # handed to the provider as they are
    fallback: bool = False
    memory: str = "arena"  # arena | lean

    def checked(self) -> SessionConfig:
        """The same configuration with names normalised; ProviderError/InputError naming what is wrong."""
        provider = "auto" if self.provider.strip().lower() == "auto" else _providers.provider_spec(self.provider).name
        precision = _providers.check_precision(self.precision)
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise InputError(f"threads must be a positive whole number or None, got {self.threads!r}")
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise InputError(
                f"unknown graph optimisation level {self.graph_optimization!r}: use one of "
                f"{', '.join(GRAPH_OPTIMIZATIONS)}"
            )
        if self.memory not in MEMORY_MODES:
            raise InputError(f"unknown memory mode {self.memory!r}: use arena (the default, fastest) or lean")
        device = self.device.strip() if isinstance(self.device, str) and self.device.strip() else None
        if provider != "auto" and device is not None and device.upper() == str(PROVIDERS[provider].default_device):
            device = None  # "openvino:CPU" is "openvino": one configuration, one name
        return replace(
            self,
            provider=provider,
            precision=precision,
            device=device,
            disabled_optimizers=tuple(dict.fromkeys(self.disabled_optimizers)),
            # order-free, so that equal settings compare equal (a key given twice: the last wins)
            config_entries=tuple(sorted(dict((str(k), str(v)) for k, v in self.config_entries).items())),
            provider_options=tuple(sorted(dict((str(k), str(v)) for k, v in self.provider_options).items())),
        )

    @classmethod
    def parse(cls, text: str, precision: str | None = None, **others: Any) -> SessionConfig:
        """``PROVIDER[:DEVICE][:PRECISION]``, e.g. ``cpu``, ``openvino:bf16``, ``openvino:GPU:f16``, ``cuda:1``.

        `precision` applies where the text names none; a text and a `precision` that disagree are an error.
        """
        provider, device, written = parse_provider(text)
        if written and precision and precision.strip().lower() != written:
            raise ProviderError(f"{text!r} asks for {written} and the precision given is {precision}: give one")
        return cls(provider=provider, device=device, precision=written or precision or "f32", **others).checked()

    @property
    def label(self) -> str:
        """A short name for tables: ``cpu``, ``openvino bf16``, ``openvino:GPU f16``."""
        where = self.provider + (f":{self.device}" if self.device else "")
        return where if self.precision == "f32" else f"{where} {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CONFIG_VERSION,
            "provider": self.provider,
            "device": self.device,
            "precision": self.precision,
            "threads": self.threads,
            "graph_optimization": self.graph_optimization,
            "disabled_optimizers": list(self.disabled_optimizers),
            "config_entries": dict(self.config_entries),
            "provider_options": dict(self.provider_options),
            "fallback": self.fallback,
            "memory": self.memory,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionConfig:
        version = data.get("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ModelFileError(
                f"session configuration version {version!r} is not one this edgenn reads ({CONFIG_VERSION}); "
                "upgrade edgenn"
            )
        return cls(
            provider=str(data.get("provider", "cpu")),
            device=data.get("device"),
            precision=str(data.get("precision", "f32")),
            threads=data.get("threads"),
            graph_optimization=str(data.get("graph_optimization", "all")),
            disabled_optimizers=tuple(data.get("disabled_optimizers", ())),
            config_entries=tuple(dict(data.get("config_entries", {})).items()),
            provider_options=tuple(dict(data.get("provider_options", {})).items()),
            fallback=bool(data.get("fallback", False)),
            memory=str(data.get("memory", "arena")),
        ).checked()


def parse_provider(text: str) -> tuple[str, str | None, str | None]:
    """``PROVIDER[:DEVICE][:PRECISION]`` -> (provider, device or None, precision or None)."""
    parts = [p.strip() for p in str(text).split(":")]
    precisions = ", ".join(_providers.PRECISIONS)
    usage = f"write PROVIDER[:DEVICE][:PRECISION], e.g. openvino:GPU:f16 (precisions: {precisions})"
    if not parts[0]:
        raise ProviderError(f"bad provider {text!r}: {usage}")
    device = precision = None
    for part in parts[1:]:
        if part.lower() in _providers.PRECISIONS and precision is None:
            precision = part.lower()
        elif part and device is None and part.lower() not in _providers.PRECISIONS:
            device = part
        else:
            raise ProviderError(f"bad provider {text!r}: {usage}")
    return parts[0], device, precision


# ---------------------------------------------------------------------------- what really ran
@dataclass(frozen=True)
class SessionInfo:
    """Where a session runs. The providers and the nodes each took are read back from onnxruntime;
    the device and precision are those the provider was configured with (onnxruntime does not report
    what OpenVINO compiled; the tests check that bf16 changes the outputs and f32 does not)."""

    requested: str  # the configuration's label, as asked
    provider: str  # short name of the provider the session runs on
    device: str  # the device's name (CPU, GPU.0, the CUDA id)
    device_description: str  # the hardware (e.g. the CPU model)
    precision: str
    threads: int | None
    providers: tuple[str, ...]  # onnxruntime's get_providers()
    nodes: tuple[tuple[str, int], ...]  # (onnxruntime provider, nodes placed on it), most first
    refused: tuple[str, ...] = ()  # nodes the provider left to another one: "name (OpType)"
    note: str = ""  # a fall-back, and why
    seconds: float = 0.0  # creating the session

    @property
    def node_count(self) -> int:
        return sum(n for _, n in self.nodes)

    @property
    def summary(self) -> str:
        """One line: ``openvino CPU (AMD EPYC) bf16, 12 of 12 nodes``."""
        primary = PROVIDERS[self.provider].ort_name
        placed = dict(self.nodes).get(primary, 0)
        nodes = f", {placed} of {self.node_count} nodes" if self.nodes else ""
        return f"{self.provider} {self.device} ({self.device_description}) {self.precision}{nodes}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "provider": self.provider,
            "device": self.device,
            "device_description": self.device_description,
            "precision": self.precision,
            "threads": self.threads,
            "providers": list(self.providers),
            "nodes": dict(self.nodes),
            "refused": list(self.refused),
            "note": self.note,
            "seconds": round(self.seconds, 4),
        }


# ------------------------------------------------------------------------------------ the runner
class OrtRunner:
    """An onnxruntime session as a Runner: specs read once from the graph, `infer`, `prepared_call`.

    No input checks here (that is `edgenn.runtime.Model`'s job): the runner is what validation,
    evaluation and the timing harness call.
    """

    def __init__(self, session: Any, info: SessionInfo, name: str, facts: FileFacts | None = None) -> None:
        self.session = session
        self.info = info
        self.name = name
        self.facts = facts  # what edgenn read from the file before onnxruntime did (None: not read)
        self.output_names = [o.name for o in session.get_outputs()]

    def end_profiling(self) -> str:
        """Stop onnxruntime's profiler (opened with `profile_prefix`) and return its trace file."""
        return str(self.session.end_profiling())

    @cached_property
    def metadata(self) -> dict[str, str]:
        """The file's metadata, as edgenn read it (checked at open), or onnxruntime's where it did not."""
        if self.facts is not None:
            return self.facts.metadata
        try:
            return dict(self.session.get_modelmeta().custom_metadata_map)
        except UnicodeDecodeError:  # onnxruntime loads such files, and its wrapper cannot decode them
            raise ModelFileError(f"{self.name}: its metadata is not UTF-8 text; re-export it") from None

    @cached_property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return graph_specs(self.session.get_inputs(), _declared(self.metadata, META_INPUTS), self.name)

    @cached_property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return graph_specs(self.session.get_outputs(), _declared(self.metadata, META_OUTPUTS), self.name)

    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self.inputs

    @property
    def device(self) -> str:
        """Where inputs and outputs live: "cuda" for a GPU provider, else "cpu" (host memory)."""
        return "cuda" if PROVIDERS[self.info.provider].gpu else "cpu"

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(feeds)), strict=True))

    def prepared_call(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """A call with no arguments that runs the model on these fixed feeds: for timing loops.

        In host memory it is `session.run` on a pre-built feed dict. On a GPU provider the inputs are
        copied to the device once and inputs and outputs are bound there (IO binding), so each call
        times the model and not the host-device copies; the outputs stay on the device.
        """
        if self.device != "cpu":
            return self._bound_call(feeds)
        run, names, fixed = self.session.run, self.output_names, dict(feeds)

        def call() -> Any:  # a closure: about 40 ns cheaper per call than functools.partial here
            return run(names, fixed)

        return call

    def _bound_call(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        import onnxruntime as ort

        device_id = int(self.info.device) if self.info.device.isdigit() else 0
        binding = self.session.io_binding()
        on_device = {
            n: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), "cuda", device_id) for n, a in feeds.items()
        }
        for name, value in on_device.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", device_id)
        # One run lets ORT allocate outputs of the right shapes; binding those keeps later calls
        # free of output allocations.
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        binding.clear_binding_outputs()
        for name, value in zip(self.output_names, outputs, strict=True):
            binding.bind_ortvalue_output(name, value)
        run_bound = self.session.run_with_iobinding

        def call(_alive: Any = (on_device, outputs)) -> Any:  # the device buffers must outlive the binding
            return run_bound(binding)

        return call


# ---------------------------------------------------------------------------------- opening
Source = str | os.PathLike[str] | bytes


def open_session(
    model: Source,
    config: SessionConfig = SessionConfig(),
    name: str = "",
    optimized_path: str | os.PathLike[str] | None = None,
    verbose: bool = False,
    profile_prefix: str | os.PathLike[str] | None = None,
    metadata: str = "strict",
    checks: bool = True,
) -> OrtRunner:
    """Open `model` (a path or the bytes of an ONNX file) as `config` says, and read back where it runs.

    Raises ModelFileError for a file onnxruntime cannot load, ProviderError for a provider, device
    or precision that is not here, or a model the provider cannot compile, start on or run whole
    (unless `config.fallback`: the CPU provider then takes over, and `runner.info.note` says why).
    "auto" tries TensorRT, CUDA, OpenVINO and the CPU in turn, taking the first that runs the whole
    model, and notes what it passed over. `optimized_path` saves the graph onnxruntime optimised.
    `profile_prefix` turns on onnxruntime's profiler (per-node times; `runner.end_profiling()` gives the
    trace): for edgenn.profile, never for timing, which it slows.

    Before onnxruntime sees the file, edgenn checks its digest and scans it for faults
    (`edgenn.runtime.integrity`): ModelFileError for a damaged file, a ModelWarning for a doubtful one.
    `metadata="ignore"` reads none of edgenn's metadata (nor the digest): a plain ONNX model.
    `checks=False` is for the graphs edgenn cuts from a checked file itself (compare --layerwise's taps,
    which may read initializers only and so have no input): no digest or scan.
    """
    config = config.checked()
    if metadata not in METADATA_MODES:
        raise InputError(f"metadata must be strict or ignore, got {metadata!r}")
    started = time.perf_counter()
    source = bytes(model) if isinstance(model, (bytes, bytearray)) else _checked_file(str(model))
    label = name or ("<bytes>" if isinstance(source, bytes) else source)
    facts = _examined(source, label, metadata) if checks else None
    opening = _Opening(
        source, label, optimized_path, verbose, started, None if profile_prefix is None else str(profile_prefix)
    )
    runner = _open_configured(opening, config)
    runner.facts = facts
    return runner


def _examined(source: str | bytes, label: str, metadata: str) -> FileFacts | None:
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ModelFileError(f"cannot read {source} ({exc.strerror or exc}); check its permissions") from None
    if data[4:8] == b"ORTM":  # ORT format (flatbuffers): a package's manifest vouches for it, not a digest
        return None
    facts = integrity.examine(data, label, metadata)
    if facts is None and metadata == "ignore":  # bytes the scan cannot read: onnxruntime says what is wrong
        facts = integrity.FileFacts(metadata={}, digest=None)
    for warning in facts.warnings if facts is not None else ():
        warnings.warn(warning, ModelWarning, stacklevel=4)
    return facts


def _open_configured(opening: _Opening, config: SessionConfig) -> OrtRunner:
    if config.provider == "auto":
        return _open_first(opening, config)
    reason = _providers.unavailable_reason(config.provider)
    if reason is not None:
        if not config.fallback:
            raise ProviderError(reason)
        return _open_on_cpu(opening, config, f"{reason.split('; ')[0]}; the CPU provider runs it instead")
    try:
        return _open_on(opening, config)
    except _Refused as refused:
        if not config.fallback:
            raise ProviderError(refused.message) from None
        if refused.runner is not None:  # it runs, with the CPU provider taking the nodes it refused
            return refused.runner
        return _open_on_cpu(opening, config, refused.note)


@dataclass(frozen=True)
class _Opening:
    """What every attempt at opening one model shares."""

    source: str | bytes
    label: str
    optimized_path: str | os.PathLike[str] | None
    verbose: bool
    started: float
    profile_prefix: str | None = None


def _open_first(opening: _Opening, config: SessionConfig) -> OrtRunner:
    """ "auto": the first provider present that runs the whole model; the CPU provider in the end."""
    passed_over = []
    for provider in _providers.present():
        if provider == "cpu":
            break
        if _precision_problem(provider, _providers.pick_device(provider, None), config.precision):
            passed_over.append(f"{provider} has no {config.precision}")
            continue
        try:
            runner = _open_on(opening, replace(config, provider=provider, device=None))
        except _Refused as refused:
            passed_over.append(refused.note.split("; ")[0])
            continue
        return _noted(runner, config, _passed_over(passed_over))
    return _open_on_cpu(opening, config, _passed_over(passed_over))


def _passed_over(reasons: Sequence[str]) -> str:
    return f"auto passed over {'; '.join(reasons)}" if reasons else ""


def _noted(runner: OrtRunner, config: SessionConfig, note: str) -> OrtRunner:
    """The runner, its info saying what was asked and why it runs where it does."""
    requested = "auto" if config.provider == "auto" else config.label
    info = replace(runner.info, requested=requested, note="; ".join(filter(None, (note, runner.info.note))))
    return OrtRunner(runner.session, info, runner.name)


class _Refused(Exception):
    """The provider is here but does not run this model whole: `message` for an error, `note` for a
    fall-back, and `runner` where the session runs with the CPU provider taking some nodes."""

    def __init__(self, message: str, note: str, runner: OrtRunner | None = None) -> None:
        super().__init__(message)
        self.message, self.note, self.runner = message, note, runner


def _open_on(opening: _Opening, config: SessionConfig) -> OrtRunner:
    """A session on `config.provider` that runs the whole model there; _Refused where it does not."""
    provider, label = config.provider, opening.label
    device = _providers.pick_device(provider, config.device)
    problem = _precision_problem(provider, device, config.precision)
    if problem:
        raise ProviderError(problem)
    try:
        session = _create(
            opening.source, config, provider, device, opening.optimized_path, opening.verbose, opening.profile_prefix
        )
    except _CreateFailed as failure:
        on_cpu = failure if provider == "cpu" else _cpu_failure(opening.source)
        if on_cpu is not None:  # the file itself is the problem, not the provider
            raise ModelFileError(_load_failure(label, opening.source, on_cpu.cause)) from None
        cause = clean_ort_message(str(failure.cause))
        raise _Refused(
            f"{provider} could not compile {label}: {cause}; run it on the cpu provider, or allow the CPU "
            "provider to take over (fallback)",
            f"{provider} could not compile the model ({cause}); the CPU provider runs it",
        ) from None
    info = _read_back(session, config, device, time.perf_counter() - opening.started)
    spec = PROVIDERS[provider]
    if spec.ort_name not in info.providers:  # a GPU provider whose libraries did not load
        raise _Refused(
            f"onnxruntime could not start {spec.ort_name} (its libraries may be missing) and would run on "
            f"{', '.join(info.providers)}; fix the install, run on the cpu provider, or allow a fall-back",
            f"onnxruntime could not start {spec.ort_name}; the CPU provider runs it",
        )
    if info.refused and spec.strict_placement:
        more = ", ..." if len(info.refused) > 1 else ""
        left = f"the CPU provider runs {len(info.refused)} of {info.node_count} nodes ({info.refused[0]}{more})"
        raise _Refused(
            f"{provider} cannot run node {info.refused[0]} of {label} ({len(info.refused)} of {info.node_count} "
            "nodes left to the CPU provider); run it on the cpu provider, or let the CPU provider take those "
            "nodes (fallback)",
            f"{provider} cannot run node {info.refused[0]}",
            OrtRunner(session, replace(info, note=f"{left}: {provider} cannot"), label),
        )
    return OrtRunner(session, info, label)


def _open_on_cpu(opening: _Opening, config: SessionConfig, note: str) -> OrtRunner:
    """The CPU provider in place of the one asked (its own device, f32: a bf16 ask is noted)."""
    if config.precision != "f32":
        note = "; ".join(filter(None, (note, f"the CPU provider computes in f32, not {config.precision}")))
    cpu = replace(config, provider="cpu", device=None, precision="f32", provider_options=())
    return _noted(_open_on(opening, cpu), config, note)


def unavailable(config: SessionConfig) -> str | None:
    """Why a configuration cannot run on this machine (provider, device or precision), or None where it can."""
    config = config.checked()
    provider = _providers.resolve_choice("auto") if config.provider == "auto" else config.provider
    reason = _providers.unavailable_reason(provider)
    if reason is not None:
        return reason
    try:
        device = _providers.pick_device(provider, config.device)
    except ProviderError as exc:
        return str(exc)
    return _precision_problem(provider, device, config.precision)


def _precision_problem(provider: str, device: Device, precision: str) -> str | None:
    if precision in device.precisions:
        return None
    hint = "; openvino offers bf16 and f16 where the device has them" if provider == "cpu" else ""
    return (
        f"{provider} {device.name} ({device.description}) does not compute in {precision}: it offers "
        f"{', '.join(device.precisions)}{hint}"
    )


class _CreateFailed(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _create(
    source: str | bytes,
    config: SessionConfig,
    provider: str,
    device: Device,
    optimized_path: str | os.PathLike[str] | None,
    verbose: bool,
    profile_prefix: str | None = None,
) -> Any:
    """The InferenceSession, built the way its provider wants it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # 3 still prints ERROR lines (red, with ANSI codes) before edgenn's own one-line message
    options.log_severity_level = 2 if verbose else 4
    if config.threads is not None:
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
    if config.memory == "lean":
        # no arena: what a call allocated goes back when it returns (and no pattern planning, which
        # pre-allocates one block for the whole call): slower, flat memory (tools/memory_bench.py)
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_LEVELS[config.graph_optimization])
    options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    for key, value in config.config_entries:
        options.add_session_config_entry(key, value)
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    extra = dict(config.provider_options)
    spec = PROVIDERS[provider]
    arguments: dict[str, Any] = {"sess_options": options}
    if config.disabled_optimizers:
        arguments["disabled_optimizers"] = list(config.disabled_optimizers)
    if spec.plugin_module:
        # Plugin providers take their devices through the session options, and no `providers=`.
        plugin_options = {"load_config": _providers.load_config_json(device, config.precision, config.threads), **extra}
        options.add_provider_for_devices([device.handle], plugin_options)
    else:
        arguments["providers"] = _provider_list(provider, device, config.precision, extra)
    try:
        with warnings.catch_warnings():
            if not verbose:  # "Specified provider ... is not in available provider names": edgenn says it better
                warnings.simplefilter("ignore")
            return ort.InferenceSession(source, **arguments)
    except Exception as exc:  # onnxruntime raises a dozen unrelated types for bad files and providers
        raise _CreateFailed(exc) from None


def _provider_list(provider: str, device: Device, precision: str, extra: dict[str, str]) -> list[Any]:
    """The `providers=` argument for a built-in provider: the asked one with its options, then its helpers."""
    if provider == "cpu":
        return [(CPU, extra)] if extra else [CPU]
    if provider == "cuda":
        # TF32 would change f32 results by about 1e-3: f32 means IEEE f32 here
        return [(PROVIDERS["cuda"].ort_name, {"device_id": device.name, "use_tf32": "0", **extra}), CPU]
    flags = {"f16": {"trt_fp16_enable": "1"}, "bf16": {"trt_bf16_enable": "1"}}.get(precision, {})
    return [
        (PROVIDERS["tensorrt"].ort_name, {"device_id": device.name, **flags, **extra}),
        (PROVIDERS["cuda"].ort_name, {"device_id": device.name, "use_tf32": "0"}),
        CPU,
    ]


def _read_back(session: Any, config: SessionConfig, device: Device, seconds: float) -> SessionInfo:
    provider = config.provider
    placed: Counter[str] = Counter()
    refused: list[str] = []
    primary = PROVIDERS[provider].ort_name
    try:
        assignment = session.get_provider_graph_assignment_info()
    except Exception:  # older onnxruntime: no placement to report
        assignment = []
    for subgraph in assignment:
        for node in subgraph.get_nodes():
            placed[subgraph.ep_name] += 1
            if subgraph.ep_name != primary:
                refused.append(f"{node.name or '?'} ({node.op_type})")
    return SessionInfo(
        requested=config.label,
        provider=provider,
        device=device.name,
        device_description=device.description,
        precision=config.precision,
        threads=config.threads,
        providers=tuple(session.get_providers()),
        nodes=tuple(placed.most_common()),
        refused=tuple(refused) if provider != "cpu" else (),
        seconds=seconds,
    )


def _cpu_failure(source: str | bytes) -> _CreateFailed | None:
    """Why the CPU provider refuses the file, or None where it takes it: tells a provider's refusal
    from a broken file."""
    try:
        _create(source, SessionConfig(), "cpu", _providers.pick_device("cpu", None), None, False)
    except _CreateFailed as failure:
        return failure
    return None


# ------------------------------------------------------------------------------- graph specs
def graph_specs(args: Sequence[Any], declared: Sequence[Mapping[str, Any]], model: str) -> tuple[TensorSpec, ...]:
    """onnxruntime's view of a graph's inputs or outputs as TensorSpecs: the one place that converts.

    A dynamic dim keeps its name from the graph, else the name edgenn's metadata declared for it,
    else ``dim<i>``. Types edgenn cannot feed are a ModelFileError naming the tensor.
    """
    specs = []
    for arg in args:
        dtype = ORT_TYPES.get(arg.type)
        if dtype is None:
            raise ModelFileError(
                f"{model}: {arg.name!r} has type {arg.type}, which edgenn does not handle "
                f"(supported: {', '.join(sorted(set(ORT_TYPES.values())))}); use onnxruntime directly"
            )
        names = next((d.get("shape", []) for d in declared if isinstance(d, Mapping) and d.get("name") == arg.name), [])
        shape: list[int | str] = []
        for i, dim in enumerate(arg.shape or ()):
            if isinstance(dim, int) and dim >= 0:
                shape.append(dim)
            elif isinstance(dim, str) and dim:
                shape.append(dim)
            elif i < len(names) and isinstance(names[i], str):
                shape.append(names[i])
            else:
                shape.append(f"dim{i}")
        specs.append(TensorSpec(arg.name, tuple(shape), dtype))
    return tuple(specs)


def _declared(metadata: Mapping[str, str], key: str) -> list[Any]:
    """Specs edgenn's exporter declared in the metadata; nothing where they are absent or unreadable
    (Model checks the metadata itself and says what is wrong with it)."""
    try:
        value = json.loads(metadata.get(key, "[]"))
    except (ValueError, RecursionError):
        return []
    return value if isinstance(value, list) else []


# ------------------------------------------------------------------------------------ messages
def _checked_file(path: str) -> str:
    file = Path(path)
    if not file.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not file.is_file():
        raise ModelFileError(f"{path} is not a file; give the path of a .onnx model")
    if file.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty, not an ONNX model")
    return path


def _load_failure(path: str, source: str | bytes, exc: BaseException) -> str:
    """One line saying why onnxruntime refused the file: not ONNX, truncated, or unsupported."""
    import onnxruntime as ort

    text = str(exc)
    if "INVALID_PROTOBUF" in text or "Protobuf parsing failed" in text:
        head = source[:1] if isinstance(source, bytes) else _first_byte(path)
        # Every ONNX file starts with field 1 (ir_version, a varint): tag byte 0x08.
        if head == b"\x08":
            return f"{path} is a truncated or corrupt ONNX file (protobuf parsing failed); export it again"
        return f"{path} is not an ONNX model (protobuf parsing failed); give a .onnx file"
    return f"onnxruntime {ort.__version__} cannot load {path}: {clean_ort_message(text)}"


def _first_byte(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(1)
    except OSError:
        return b""


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (?:Load model from .*? failed:)?")
_CPP_LOCATION = re.compile(r"\S+\.(?:h|cc|cpp|hpp):\d+ [^()]*\((?:[^()]|\([^()]*\))*\)\s*")


def clean_ort_message(text: str, limit: int = 420) -> str:
    """onnxruntime's error without its error-code prefix and C++ source locations, on one short line."""
    message = _ORT_PREFIX.sub("", " ".join(text.split()))
    message = _CPP_LOCATION.sub("", message).strip() or "unknown error"
    if len(message) > limit:
        cut = message.rfind(". ", 0, limit)
        message = message[: cut + 1] if cut > 0 else message[:limit] + "..."
    return message


__all__ = [
    "GRAPH_OPTIMIZATIONS",
    "OrtRunner",
    "SessionConfig",
    "SessionInfo",
    "graph_specs",
    "open_session",
    "unavailable",
]
