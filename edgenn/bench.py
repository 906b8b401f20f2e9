"""Honest timings of ONNX models on every execution provider and precision asked, and of eager PyTorch.

The method, for each point of the sweep (threads, batch):
- the contenders are every (model, provider, precision) asked for that can run here, and the eager
  model where given: all of them side by side in one run, so that every speedup is paired;
- every contender is warmed up on its own (that is also where its memory growth is read);
- then they run in edgenn.timing's interleaved rounds of blocks, each call timed alone;
- speedups are paired: per round, the baseline's block median over the contender's, and the median
  of those ratios with a distribution-free 95% confidence interval (edgenn.stats);
- the process CPU time of each block is read between blocks: a one-thread run whose wall time
  clearly exceeds its CPU time was preempted by another program, and says so.
Sessions are opened once per thread count through edgenn.runtime.session, the one session layer;
what each really ran on (provider, device, precision, nodes placed) is in the report.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgenn import _callable_stage, timing
from edgenn.calibration import random_array
from edgenn.environment import Environment, collect_environment, load_average
from edgenn.errors import EdgennError, InputError, ModelFileError, first_line
from edgenn.fileio import atomic_path, check_file_target
from edgenn.runtime import providers as provider_table
from edgenn.runtime.session import SessionConfig, clean_ort_message, open_session, parse_provider, unavailable
from edgenn.specs import BATCH, META_DIM_SIZES, META_SOURCE, TensorSpec, fixed_batch
from edgenn.stats import RatioSummary, Summary, paired_ratio, summarize
from edgenn.timing import MIN_ROUNDS, Rounds, plan_rounds, run_rounds, time_calls  # noqa: F401  (re-exported)
from edgenn.versions import edgenn_version

PROVIDER_CHOICES = (*provider_table.CHOICES, "all")  # "all": every provider of the table

METHOD = (
    "per point (threads, batch): every model on every provider and precision asked, and the eager model, "
    "side by side; warm-up per contender, then rounds in which each makes a block of back-to-back calls "
    "(order rotating); each call timed alone with perf_counter_ns around the call only, garbage collector "
    "paused; latency figures pool all timed calls; throughput = batch / median latency; speedup = median "
    "over rounds of (baseline block median / contender block median), with a distribution-free 95% "
    "interval; cpu_ms = process CPU time per call, read between blocks; GPU providers bind inputs and "
    "outputs on the device (IO binding)"
)


# ------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class BenchOptions:
    providers: tuple[str, ...] = ("cpu",)  # PROVIDER[:DEVICE][:PRECISION] | auto | all
    precisions: tuple[str, ...] = ("f32",)  # f32 | bf16 | f16, for each provider that names no precision
    fallback: bool = False  # the CPU provider takes the nodes a provider refuses (and the report says so)
    threads: tuple[int, ...] = (1,)  # intra-op threads of ORT and torch.set_num_threads for eager
    batches: tuple[int, ...] = (1,)
    warmup: int = 10  # untimed calls per contender before each point
    runs: int | None = None  # timed calls per contender per point; None: run for `seconds`
    seconds: float = 1.0  # time budget of one point (all contenders together) when runs is None
    rounds: int = 25  # rounds per point (fewer when runs is smaller)
    inputs: tuple[TensorSpec, ...] = ()  # sizes of dynamic dims other than batch, by input name
    seed: int = 0
    profile: bool = False  # per-node times of each ONNX model (edgenn.profile), after the timings

    def checked(self) -> BenchOptions:
        if not self.providers:
            raise InputError(f"no provider given: use --provider {', '.join(PROVIDER_CHOICES)}")
        for choice in self.providers:
            if choice.strip().lower() != "all":
                SessionConfig.parse(choice)  # an unknown name is a usage error, listing the valid ones
        if not self.precisions:
            raise InputError("no precision given: use --precision f32, bf16 or f16")
        precisions = tuple(provider_table.check_precision(p) for p in self.precisions)
        if not self.threads or any(t < 1 for t in self.threads):
            raise InputError(f"thread counts must be 1 or more (got {list(self.threads)}), e.g. --threads 1,2")
        if not self.batches or any(b < 1 for b in self.batches):
            raise InputError(f"batch sizes must be 1 or more (got {list(self.batches)}), e.g. --batch 1,8,64")
        if self.warmup < 0:
            raise InputError(f"--warmup must be 0 or more (got {self.warmup})")
        if self.runs is not None and self.runs < 1:
            raise InputError(f"--runs must be 1 or more (got {self.runs}): nothing would be measured")
        if self.runs is None and not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise InputError(f"--seconds must be a positive number (got {self.seconds})")
        if self.rounds < 1:
            raise InputError(f"rounds must be 1 or more (got {self.rounds})")
        return replace(
            self,
            threads=_unique(self.threads),
            batches=_unique(self.batches),
            providers=_unique(tuple(p.strip() for p in self.providers)),
            precisions=_unique(precisions),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "providers": list(self.providers),
            "precisions": list(self.precisions),
            "fallback": self.fallback,
            "threads": list(self.threads),
            "batches": list(self.batches),
            "warmup": self.warmup,
            "runs": self.runs,
            "seconds": None if self.runs else self.seconds,
            "rounds": self.rounds,
            "inputs": [s.to_dict() for s in self.inputs],
            "seed": self.seed,
            "profile": self.profile,
        }


@dataclass(frozen=True)
class VariantInfo:
    name: str
    kind: str  # "onnx" | "eager"
    source: str  # the .onnx path, or the SOURCE spec of the eager model
    inputs: tuple[TensorSpec, ...]  # as benched: every dim fixed but the batch

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "inputs": [s.to_dict() for s in self.inputs],
        }


@dataclass(frozen=True)
class BenchResult:
    """One contender (a model on a provider at a precision) at one point of the sweep. Times in ms."""

    variant: str
    provider: str  # cpu | openvino | openvino:GPU | cuda | tensorrt | torch (the eager model)
    precision: str  # what the provider computed in (f32, bf16, f16)
    providers_used: tuple[str, ...]  # what the session really got (onnxruntime's get_providers())
    placement: str  # where it ran, read back: device, precision, nodes the provider took
    device: str  # where inputs and outputs live: "cpu" | "cuda"
    threads: int
    batch: int
    latency_ms: Summary
    throughput: float  # samples per second, from the median latency
    runs: int  # timed calls
    rounds: int
    session_seconds: float  # creating the ORT session (eager: building the module, loading weights)
    session_memory_mb: float | None  # peak RSS growth while creating it
    run_memory_mb: float | None  # peak RSS growth over the warm-up calls at this batch
    cpu_ms: float  # process CPU time (all threads) per timed call, mean: far below the mean latency
    # of a one-thread CPU run, it says that calls waited for a core (another program was running)
    baseline: str | None  # what `speedup` compares with; None for the baseline itself
    speedup: RatioSummary | None  # baseline time / this contender's time, paired per round (>1: faster)

    @property
    def label(self) -> str:
        """variant [provider precision]: how the contender is named in tables and as a baseline."""
        return contender_label(self.variant, self.provider, self.precision)

    @property
    def waited_for_cpu(self) -> bool:
        """A one-thread CPU run whose calls took 20% more wall time than CPU time: preempted."""
        return self.threads == 1 and self.device == "cpu" and self.latency_ms.mean > 1.2 * self.cpu_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "provider": self.provider,
            "precision": self.precision,
            "providers_used": list(self.providers_used),
            "placement": self.placement,
            "device": self.device,
            "threads": self.threads,
            "batch": self.batch,
            "latency_ms": self.latency_ms.to_dict(),
            "throughput_per_s": self.throughput,
            "runs": self.runs,
            "rounds": self.rounds,
            "session_seconds": self.session_seconds,
            "session_memory_mb": self.session_memory_mb,
            "run_memory_mb": self.run_memory_mb,
            "cpu_ms": self.cpu_ms,
            "baseline": self.baseline,
            "speedup": self.speedup.to_dict() if self.speedup else None,
            "waited_for_cpu": self.waited_for_cpu,
        }


@dataclass(frozen=True)
class SkippedPoint:
    variant: str  # "*" where the whole provider was skipped
    provider: str  # the provider and precision, as labelled in the table
    threads: int | None
    batch: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "provider": self.provider,
            "threads": self.threads,
            "batch": self.batch,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class BenchReport:
    environment: Environment
    options: BenchOptions
    variants: tuple[VariantInfo, ...]
    results: tuple[BenchResult, ...]
    skipped: tuple[SkippedPoint, ...]
    memory_method: str
    started: str  # UTC, ISO 8601
    seconds: float  # wall time of the whole bench
    load_average_end: tuple[float, float, float] | None  # environment.load_average is the start's
    method: str = METHOD
    profiles: tuple[Any, ...] = ()  # edgenn.profile.Profile, with --profile
    attributions: tuple[Any, ...] = ()  # edgenn.profile.Attribution: each model against the first
    edgenn_version: str = field(default_factory=edgenn_version)

    @property
    def busy(self) -> bool:
        """Other work competed for the cores at the start or the end: the figures are noisier."""
        end = self.load_average_end
        return self.environment.busy or (end is not None and end[0] > self.environment.usable_cores)

    def result(
        self, variant: str, provider: str, precision: str = "f32", threads: int = 1, batch: int = 1
    ) -> BenchResult | None:
        """The result of one contender at one point, or None where it was not measured."""
        return next(
            (
                r
                for r in self.results
                if (r.variant, r.provider, r.precision, r.threads, r.batch)
                == (variant, provider, precision, threads, batch)
            ),
            None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "edgenn_version": self.edgenn_version,
            "busy": self.busy,
            "started": self.started,
            "seconds": self.seconds,
            "load_average_end": list(self.load_average_end) if self.load_average_end else None,
            "method": self.method,
            "memory_method": self.memory_method,
            "environment": self.environment.to_dict(),
            "options": self.options.to_dict(),
            "variants": [v.to_dict() for v in self.variants],
            "results": [r.to_dict() for r in self.results],
            "skipped": [s.to_dict() for s in self.skipped],
            "profiles": [p.to_dict() for p in self.profiles],
            "attributions": [a.to_dict() for a in self.attributions],
        }


def contender_label(variant: str, provider: str, precision: str) -> str:
    """``lenet5 [openvino bf16]``: a model on a provider, at a precision (f32 unsaid)."""
    return f"{variant} [{provider}{'' if precision == 'f32' else ' ' + precision}]"


# ---------------------------------------------------------------------------------- the harness
Progress = Callable[[int, int, str], None]  # (points done, points in all, what runs now)


def bench(
    models: Sequence[str | Path] = (),
    eager: str | None = None,
    weights: str | Path | None = None,
    options: BenchOptions = BenchOptions(),
    progress: Progress | None = None,
) -> BenchReport:
    """Time each ONNX model on each provider and precision (and the eager SOURCE, the baseline) over the sweep."""
    options = options.checked()
    if not models and eager is None:
        raise InputError("nothing to bench: give one or more .onnx files and/or --eager SOURCE")
    if weights is not None and eager is None:
        raise InputError("--weights belongs to --eager (a zoo model's trained weights); add --eager MODEL")
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    configs, skipped = session_plan(options.providers, options.precisions, options.fallback)
    variants = [_inspect_onnx(path, name) for path, name in zip(models, variant_names(models), strict=True)]
    if eager is not None:
        variants.append(_load_eager(eager, weights, options.inputs))
    _resolve_dims(variants, options.inputs)
    if eager is not None:
        _check_eager_matches(variants, eager)
    environment = collect_environment()
    probe = RssProbe()
    gc.collect()  # once, here: later only young garbage is collected, and none while timing
    results: list[BenchResult] = []
    total, done = len(options.threads) * len(options.batches), 0
    with _torch_threads_restored(any(v.kind == "eager" for v in variants)):
        # Most threads first: growing torch's OpenMP pool after set_num_threads(1) left the eager
        # LSTM at a p90 of 148 ms (median 0.09 ms) on a busy 2-core machine; shrinking it did not.
        for threads in sorted(options.threads, reverse=True):
            contenders, failed = _open_contenders(variants, configs, threads, probe)
            skipped += failed
            for batch in options.batches:
                if progress:
                    progress(done, total, f"threads={threads} batch={batch}")
                got, skips = _measure_point(contenders, threads, batch, options, probe)
                results += got
                skipped += skips
                done += 1
    if progress:
        progress(done, total, "done")
    if not results:
        reasons = "; ".join(dict.fromkeys(s.reason for s in skipped)) or "no point of the sweep could run"
        raise EdgennError(f"nothing measured: {reasons}")
    profiles, attributions = (), ()
    if options.profile:
        if progress:
            progress(done, total, "profiling")
        profiles, attributions, unprofiled = _profiles(variants, configs, options)
        skipped += unprofiled
    return BenchReport(
        environment,
        options,
        tuple(v.info for v in variants),
        tuple(results),
        tuple(skipped),
        probe.method,
        started,
        time.perf_counter() - t0,
        load_average(),
        profiles=profiles,
        attributions=attributions,
    )


def _profiles(
    variants: Sequence[_Variant], configs: Sequence[SessionConfig], options: BenchOptions
) -> tuple[tuple[Any, ...], tuple[Any, ...], list[SkippedPoint]]:
    """Each ONNX model profiled on each configuration at each batch (at the first thread count), and each
    model's time against the first model's, node by node, where there are several."""
    from edgenn.profile import attribute, profile_model

    threads = options.threads[0]
    profiles, attributions, skipped = [], [], []
    for config in configs:
        for batch in options.batches:
            first = None
            for variant in variants:
                frozen = fixed_batch(variant.info.inputs)
                if variant.kind != "onnx" or (frozen is not None and frozen != batch):
                    continue
                feeds = make_feeds(variant.info.inputs, batch, options.seed)
                try:
                    profile = profile_model(variant.path, replace(config, threads=threads), feeds, label=variant.name)
                except EdgennError as exc:
                    skipped.append(SkippedPoint(variant.name, config.label, threads, batch, f"profile: {exc}"))
                    continue
                profiles.append(profile)
                if first is None:
                    first = profile
                else:
                    attributions.append(attribute(first, profile))
    return tuple(profiles), tuple(attributions), skipped


def session_plan(
    choices: Sequence[str], precisions: Sequence[str] = ("f32",), fallback: bool = False
) -> tuple[list[SessionConfig], list[SkippedPoint]]:
    """The session configurations to measure (provider x precision), and those that cannot run here, with why.

    A choice that names its precision (openvino:bf16) is measured at that one; the others at each of
    `precisions`. Two spellings of one configuration (openvino, openvino:CPU) are measured once. An
    unknown name is an error; a known provider this machine lacks, or a precision its device does not
    offer, is a skipped point.
    """
    wanted = tuple(provider_table.PROVIDERS) if any(c.strip().lower() == "all" for c in choices) else tuple(choices)
    plan: list[SessionConfig] = []
    skipped: list[SkippedPoint] = []
    for choice in _unique(wanted):
        provider, device, written = parse_provider(choice)
        base = SessionConfig(provider=provider, device=device, fallback=fallback).checked()
        if base.provider == "auto":
            base = replace(base, provider=provider_table.resolve_choice("auto"))
        for precision in (written,) if written else precisions:
            config = replace(base, precision=precision)
            reason = unavailable(config)
            if reason is not None:
                # one line for a missing provider, not one per precision
                whole = unavailable(replace(base, precision="f32"))
                label = base.label if whole else config.label
                if not any(s.provider == label for s in skipped):
                    skipped.append(SkippedPoint("*", label, None, None, whole or reason))
            elif config not in plan:
                plan.append(config)
    return plan, skipped


def variant_names(models: Sequence[str | Path]) -> list[str]:
    """File stems (lenet5, lenet5.int8); where stems collide, the folder too (lenet5/model), else the paths."""
    for parts in (1, 2):
        names = [
            "/".join(Path(m).with_suffix("").parts[-parts:])
            if str(m).endswith(".onnx")
            else "/".join(Path(m).parts[-parts:])
            for m in models
        ]
        if len(set(names)) == len(names):
            return names
    return [str(m) for m in models]


# --------------------------------------------------------------------------- variants and inputs
@dataclass
class _Variant:
    """What the harness knows of a model before any session exists."""

    info: VariantInfo
    path: Path | None = None  # onnx
    module: Any = None  # eager
    load_seconds: float = 0.0  # eager: building the module and loading the weights
    load_memory_mb: float | None = None
    examples: tuple[Any, ...] = ()  # eager: the factory's own example inputs, for dim sizes
    stored_dims: dict[str, int] = field(default_factory=dict)  # onnx: the sizes its export was validated at
    source: str | None = None  # onnx: the SOURCE it was exported from (edgenn metadata), where known

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def kind(self) -> str:
        return self.info.kind


def _inspect_onnx(path: str | Path, name: str) -> _Variant:
    """Read the inputs of a model, proving on the way that onnxruntime can load it."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} not found; export one with `edgenn export`")
    runner = open_session(path, SessionConfig(threads=1), name=str(path))
    specs = runner.inputs
    # whatever its name, a symbolic first dim is the batch
    specs = tuple(s.with_batch(BATCH) if s.shape and isinstance(s.shape[0], str) else s for s in specs)
    try:
        stored = json.loads(runner.metadata.get(META_DIM_SIZES, "{}"))
    except ValueError:
        stored = {}
    stored = {str(k): v for k, v in stored.items() if isinstance(v, int) and v > 0} if isinstance(stored, dict) else {}
    return _Variant(
        VariantInfo(name, "onnx", str(path), specs),
        path=path,
        stored_dims=stored,
        source=runner.metadata.get(META_SOURCE),
    )


def _check_eager_matches(variants: Sequence[_Variant], eager_spec: str) -> None:
    """The eager baseline must be the model the .onnx files were exported from: same inputs (count,
    dtypes, sizes) and, where the file names a zoo model, that model. Otherwise its speed-up means nothing."""
    eager = next((v for v in variants if v.kind == "eager"), None)
    if eager is None:
        return
    for variant in variants:
        if variant.kind != "onnx":
            continue
        zoo_source = variant.source if variant.source and ":" not in variant.source else None
        if zoo_source and ":" not in eager_spec and zoo_source != eager_spec:
            raise InputError(
                f"--eager {eager_spec} is not the model of {variant.info.source} (exported from {zoo_source}); "
                f"bench a model against its own eager source: --eager {zoo_source}"
            )
        mine = [(s.dtype, s.shape[1:]) for s in eager.info.inputs]
        theirs = [(s.dtype, s.shape[1:]) for s in variant.info.inputs]
        if mine != theirs:
            shown = ", ".join(str(s) for s in variant.info.inputs)
            own = ", ".join(str(s) for s in eager.info.inputs)
            raise InputError(
                f"--eager {eager_spec} takes {own} but {variant.info.source} takes {shown}: the eager baseline must "
                "be the model the .onnx was exported from"
            )


def _load_eager(spec: str, weights: str | Path | None, overrides: Sequence[TensorSpec]) -> _Variant:
    """The eager baseline, through edgenn.sources (zoo name with weights, or file.py:factory)."""
    from edgenn.sources import load_source

    probe = RssProbe()
    base = probe.start()
    t0 = time.perf_counter()
    # A user's factory may not say what its inputs are: --input does (the first dim being the batch).
    # Where the factory returns example inputs, those name the inputs and their dtypes, and --input
    # only sizes their dynamic dims (in _resolve_dims).
    given = tuple(TensorSpec(s.name, (BATCH, *s.shape[1:]), s.dtype) for s in overrides) if ":" in spec else ()
    try:
        try:
            loaded = load_source(spec, None if weights is None else str(weights))
        except InputError:
            if not given:
                raise
            loaded = None  # a factory without example inputs: --input says what they are
        if given and (loaded is None or loaded.user_examples is None):
            loaded = load_source(spec, None, given)
    except EdgennError as exc:
        raise type(exc)(f"eager source {spec!r} does not load: {exc}") from None
    except Exception as exc:  # the user's code can raise anything
        raise EdgennError(f"eager source {spec!r} does not load: {type(exc).__name__}: {first_line(exc)}") from None
    seconds = time.perf_counter() - t0
    info = VariantInfo(f"eager:{loaded.name}", "eager", spec, tuple(loaded.input_specs))
    return _Variant(
        info,
        module=loaded.module,
        load_seconds=seconds,
        load_memory_mb=probe.growth_mb(base),
        examples=tuple(loaded.user_examples or ()),
    )


def _resolve_dims(variants: list[_Variant], overrides: Sequence[TensorSpec]) -> None:
    """Fix every dynamic dim but the batch: from --input (by input name, or by dim name across
    variants), else from an eager factory's example inputs; else a clear error."""
    by_input = {s.name: s for s in overrides}
    known = {s.name for v in variants for s in v.info.inputs}
    unknown = sorted(set(by_input) - known)
    if unknown:
        raise InputError(f"--input names {', '.join(unknown)}, but the models' inputs are {', '.join(sorted(known))}")
    sizes: dict[str, int] = {}
    for variant in variants:
        for spec in variant.info.inputs:
            given = by_input.get(spec.name)
            if given is None:
                continue
            if len(given.shape) != len(spec.shape):
                raise InputError(
                    f"--input {given}: {variant.name} input {spec.name!r} has {len(spec.shape)} "
                    f"dimensions ({'x'.join(map(str, spec.shape))}), not {len(given.shape)}"
                )
            for dim, size in zip(spec.shape[1:], given.shape[1:], strict=True):
                if isinstance(dim, str) and isinstance(size, int):
                    sizes.setdefault(dim, size)
        for spec, example in zip(variant.info.inputs, variant.examples, strict=False):
            for dim, size in zip(spec.shape[1:], tuple(example.shape)[1:], strict=False):
                if isinstance(dim, str):
                    sizes.setdefault(dim, int(size))
    for variant in variants:  # last: what the export was validated at
        for dim, size in variant.stored_dims.items():
            sizes.setdefault(dim, size)
    for variant in variants:
        fixed = tuple(_fix_dims(spec, by_input.get(spec.name), sizes, variant.name) for spec in variant.info.inputs)
        variant.info = replace(variant.info, inputs=fixed)


def _fix_dims(spec: TensorSpec, given: TensorSpec | None, sizes: Mapping[str, int], variant: str) -> TensorSpec:
    dims: list[Any] = list(spec.shape[:1])
    for i, dim in enumerate(spec.shape[1:], start=1):
        if isinstance(dim, int):
            dims.append(dim)
            continue
        size = given.shape[i] if given is not None and isinstance(given.shape[i], int) else sizes.get(dim)
        if size is None:
            example = "x".join(["B"] + [str(d) if isinstance(d, int) else "8" for d in spec.shape[1:]])
            raise InputError(
                f"{variant}: input {spec.name!r} has a dynamic dimension {dim!r} "
                f"({'x'.join(map(str, spec.shape))}); give its size with --input {spec.name}:{example}:{spec.dtype} "
                "(the first dimension is the batch, from --batch)"
            )
        dims.append(size)
    return TensorSpec(spec.name, tuple(dims), spec.dtype)


def make_feeds(specs: Sequence[TensorSpec], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs, the same for every variant with the same specs: floats ~ N(0, 1); integers
    0 or 1 (a valid index into any embedding); booleans at random."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = tuple(batch if isinstance(d, str) else d for d in spec.shape)
        feeds[spec.name] = random_array(rng, shape, spec.dtype)
    return feeds


# --------------------------------------------------------------------------------- contenders
@dataclass
class _Contender:
    """A model ready to time at one thread count: on a provider and precision, or eager."""

    variant: _Variant
    provider: str  # the config's provider (with its device), or "torch"
    precision: str
    prepare: Callable[[dict[str, np.ndarray]], Callable[[], Any]]  # feeds -> the call to time
    providers_used: tuple[str, ...]
    placement: str
    device: str
    seconds: float
    memory_mb: float | None

    @property
    def label(self) -> str:
        return contender_label(self.variant.name, self.provider, self.precision)


def _open_contenders(
    variants: Sequence[_Variant], configs: Sequence[SessionConfig], threads: int, probe: RssProbe
) -> tuple[list[_Contender], list[SkippedPoint]]:
    """Every model on every configuration, and the eager model on each device the configurations use."""
    opened, skipped = [], []
    for variant in variants:
        if variant.kind == "eager":
            for device in dict.fromkeys("cuda" if provider_table.PROVIDERS[c.provider].gpu else "cpu" for c in configs):
                contender, reason = _open_eager(variant, device, threads)
                if contender is None:
                    skipped.append(SkippedPoint(variant.name, f"torch {device}", threads, None, reason))
                else:
                    opened.append(contender)
            continue
        for config in configs:
            contender, reason = _open_onnx(variant, replace(config, threads=threads), probe)
            if contender is None:
                skipped.append(SkippedPoint(variant.name, config.label, threads, None, reason))
            else:
                opened.append(contender)
    return opened, skipped


def _open_onnx(variant: _Variant, config: SessionConfig, probe: RssProbe) -> tuple[_Contender | None, str]:
    gc.collect(1)  # young garbage only: a full collection costs 0.2 s once torch is loaded
    base = probe.start()
    try:
        runner = open_session(variant.path, config, name=variant.name)
    except EdgennError as exc:
        return None, str(exc)
    info = runner.info
    where = config.provider + (f":{config.device}" if config.device else "")
    return _Contender(
        variant,
        where,
        info.precision,
        runner.prepared_call,
        info.providers,
        info.summary + (f" ({info.note})" if info.note else ""),
        runner.device,
        info.seconds,
        probe.growth_mb(base),
    ), ""


def _open_eager(variant: _Variant, device: str, threads: int) -> tuple[_Contender | None, str]:
    import torch

    from edgenn.runners import TorchRunner

    if device == "cuda" and not torch.cuda.is_available():
        return None, f"eager PyTorch cannot run on the GPU here (torch {torch.__version__} sees no CUDA device)"
    torch.set_num_threads(threads)
    runner = TorchRunner(variant.module, variant.info.inputs, device=device)
    return _Contender(
        variant,
        "torch" if device == "cpu" else f"torch:{device}",
        "f32",
        runner.prepared_call,
        (f"torch-{device}",),
        f"torch {torch.__version__} on {device}",
        device,
        variant.load_seconds,
        variant.load_memory_mb,
    ), ""


@contextlib.contextmanager
def _torch_threads_restored(active: bool) -> Iterator[None]:
    """torch.set_num_threads is process-wide: put the caller's setting back afterwards."""
    if not active:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# ------------------------------------------------------------------------------- measuring
def _measure_point(
    contenders: Sequence[_Contender], threads: int, batch: int, options: BenchOptions, probe: RssProbe
) -> tuple[list[BenchResult], list[SkippedPoint]]:
    skipped, ready = [], []
    for c in contenders:
        frozen = fixed_batch(c.variant.info.inputs)
        if frozen is not None and frozen != batch:
            reason = f"the model's batch dimension is fixed at {frozen}; bench it with --batch {frozen}"
            skipped.append(SkippedPoint(c.variant.name, c.provider, threads, batch, reason))
        else:
            ready.append(c)
    if not ready:
        return [], skipped
    calls, per_call, memory = [], [], []
    labels = _labels(ready)
    for c, label in zip(ready, labels, strict=True):  # warm-up one at a time, so that memory growth is its own
        gc.collect(1)
        base = probe.start()
        feeds = make_feeds(c.variant.info.inputs, batch, options.seed)
        call = c.prepare(feeds)
        # no warm-up call at all with --warmup 0 --runs N; a time budget needs one call's speed to plan
        warmup = options.warmup or (0 if options.runs else 1)
        with _failing_inputs_explained(label, feeds):
            per_call.append(timing.warm_seconds(call, warmup))
        memory.append(probe.growth_mb(base))
        calls.append(call)
    blocks = plan_rounds(per_call, options.runs, options.seconds, options.rounds)
    with _failing_inputs_explained("a contender", {}):  # reached only where there was no warm-up
        measured = run_rounds(calls, blocks)
    baselines = _baselines(ready)
    round_medians = [measured.round_medians(i) for i in range(len(ready))]
    results = []
    for i, c in enumerate(ready):
        times = measured.times[i]
        latency = summarize(times).scaled(1e-6)
        base_index = baselines[i]
        speedup = None if i == base_index else paired_ratio(round_medians[base_index], round_medians[i])
        results.append(
            BenchResult(
                variant=c.variant.name,
                provider=c.provider,
                precision=c.precision,
                providers_used=c.providers_used,
                placement=c.placement,
                device=c.device,
                threads=threads,
                batch=batch,
                latency_ms=latency,
                throughput=batch / (latency.median / 1e3),
                runs=int(times.size),
                cpu_ms=measured.cpu_ns[i] / times.size / 1e6,
                rounds=len(blocks),
                session_seconds=c.seconds,
                session_memory_mb=c.memory_mb,
                run_memory_mb=memory[i],
                baseline=None if i == base_index else labels[base_index],
                speedup=speedup,
            )
        )
    return results, skipped


@contextlib.contextmanager
def _failing_inputs_explained(contender: str, feeds: Mapping[str, np.ndarray]) -> Iterator[None]:
    """A model that raises on the bench's inputs is a one-line error naming them, not a traceback."""
    try:
        yield
    except Exception as exc:
        shapes = ", ".join(f"{name} {'x'.join(map(str, a.shape))} {a.dtype}" for name, a in feeds.items())
        on = f" on {shapes}" if shapes else ""
        why = clean_ort_message(first_line(exc, limit=2000))
        raise EdgennError(f"{contender} fails{on}: {why}; check the sizes given with --input") from None


def _labels(contenders: Sequence[_Contender]) -> list[str]:
    """How each contender is named as a baseline: the model alone where one configuration (and eager on
    the CPU) leaves no doubt, else with its provider and precision."""
    configs = {(c.provider, c.precision) for c in contenders if c.variant.kind == "onnx"}
    devices = {c.device for c in contenders if c.variant.kind == "eager"}
    plain = len(configs) <= 1 and devices <= {"cpu"}
    return [c.variant.name if plain else c.label for c in contenders]


def _baselines(contenders: Sequence[_Contender]) -> list[int]:
    """The contender each one's speedup is measured against (its own index for a baseline).

    The eager model where it runs at this point (on the CPU first). Without one, each model on
    another provider or precision is compared with itself on the first configuration (the same
    file on the same inputs); the first configuration's rows with the first model, as before.
    """
    eager = [i for i, c in enumerate(contenders) if c.variant.kind == "eager"]
    if eager:
        first = min(eager, key=lambda i: contenders[i].device != "cpu")
        return [first] * len(contenders)
    first_config = (contenders[0].provider, contenders[0].precision)
    own = {}
    for i, c in enumerate(contenders):
        if (c.provider, c.precision) == first_config:
            own.setdefault(c.variant.name, i)
    return [0 if (c.provider, c.precision) == first_config else own.get(c.variant.name, 0) for c in contenders]


# --------------------------------------------------------------------------------- memory
class RssProbe:
    """Peak resident memory growth over a stretch of work, in MiB.

    Linux: the process's peak RSS (VmHWM) is reset through /proc/self/clear_refs at the start, and
    the figure is VmHWM at the end minus VmRSS at the start: the most host memory the stretch added
    at any moment (GPU memory is not counted). Elsewhere there is no figure (None).
    """

    def __init__(self) -> None:
        self.available = self._reset()
        self.method = (
            "peak RSS growth of the process (Linux VmHWM, reset via /proc/self/clear_refs, "
            "minus VmRSS before), "
            "host memory only: session = while creating the session (eager: building the module and loading "
            "weights); run = over the warm-up calls of each point, beyond what earlier points "
            "already allocated"
            if self.available
            else "not measured (needs Linux /proc/self/clear_refs)"
        )

    def start(self) -> int:
        if not self.available:
            return 0
        self._reset()
        return _proc_status_kib("VmRSS")

    def growth_mb(self, base_kib: int) -> float | None:
        if not self.available:
            return None
        return max(0, _proc_status_kib("VmHWM") - base_kib) / 1024

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # "5" resets the peak RSS counter (Linux >= 4.0)
            return _proc_status_kib("VmHWM") > 0
        except OSError:
            return False


def _proc_status_kib(key: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


# --------------------------------------------------------------------------------- outputs
CSV_COLUMNS = (
    "variant",
    "provider",
    "precision",
    "providers_used",
    "placement",
    "device",
    "threads",
    "batch",
    "runs",
    "rounds",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "throughput_per_s",
    "session_seconds",
    "session_memory_mb",
    "run_memory_mb",
    "cpu_ms",
    "baseline",
    "speedup",
    "speedup_ci_low",
    "speedup_ci_high",
)


def csv_rows(report: BenchReport) -> list[dict[str, Any]]:
    rows = []
    for r in report.results:
        lat = r.latency_ms
        rows.append(
            {
                "variant": r.variant,
                "provider": r.provider,
                "precision": r.precision,
                "providers_used": " ".join(r.providers_used),
                "placement": r.placement,
                "device": r.device,
                "threads": r.threads,
                "batch": r.batch,
                "runs": r.runs,
                "rounds": r.rounds,
                "median_ms": lat.median,
                "p90_ms": lat.p90,
                "p99_ms": lat.p99,
                "mean_ms": lat.mean,
                "std_ms": lat.std,
                "min_ms": lat.min,
                "max_ms": lat.max,
                "throughput_per_s": r.throughput,
                "session_seconds": r.session_seconds,
                "session_memory_mb": r.session_memory_mb,
                "run_memory_mb": r.run_memory_mb,
                "cpu_ms": r.cpu_ms,
                "baseline": r.baseline,
                "speedup": r.speedup.median if r.speedup else None,
                "speedup_ci_low": r.speedup.ci_low if r.speedup else None,
                "speedup_ci_high": r.speedup.ci_high if r.speedup else None,
            }
        )
    return rows


def write_csv(report: BenchReport, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_rows(report))


def require_matplotlib() -> None:
    """Fail before measuring, not after, when --plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EdgennError("--plot needs matplotlib: pip install 'edgenn[plot]' (or drop --plot)") from None


def write_plot(report: BenchReport, path: str | Path) -> None:
    """Median latency against batch size, one line per variant (and provider / threads, where swept)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    many_providers = len({(r.provider, r.precision) for r in report.results}) > 1
    many_threads = len({r.threads for r in report.results}) > 1
    for r in report.results:
        label = (r.label if many_providers else r.variant) + (f" t={r.threads}" if many_threads else "")
        series.setdefault(label, []).append((r.batch, r.latency_ms.median))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    batches = sorted({r.batch for r in report.results})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("median latency (ms)")
    ax.set_title(f"edgenn bench on {report.environment.cpu_model}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def check_output_path(path: str | Path, flag: str) -> None:
    """Fail before measuring when an output file could not be written."""
    check_file_target(path, flag)


def _unique(items: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


_callable_stage(__name__)  # `edgenn.bench(...)` works even after `import edgenn.bench`
