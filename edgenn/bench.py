"""Honest timings of ONNX variants (and the eager PyTorch model) on onnxruntime providers.

The method, for each point of the sweep (provider, threads, batch):
- every variant is warmed up on its own (that is also where its memory growth is read);
- then the variants run in rounds: in each round every variant makes a block of back-to-back calls,
  the order rotating from round to round. Drift (clock frequency, other tenants) therefore hits every
  variant alike, and blocks keep one variant from running on caches another has just flushed (calls
  interleaved one by one made ORT's LeNet-5 about 28% slower beside eager PyTorch on this machine);
- each call is timed alone with perf_counter_ns around exactly the call (feeds built beforehand, the
  garbage collector paused, as `timeit` does); latency figures pool all timed calls;
- speedups are paired: per round, the baseline's block median over the variant's, and the median of
  those ratios with a distribution-free 95% confidence interval (edgenn.stats);
- the process CPU time of each block is read between blocks (never inside a timed call): a one-thread
  run whose wall time clearly exceeds its CPU time was preempted by another program, and says so.
Sessions are created once per provider and thread count; creation time and memory are per variant.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgenn import _callable_stage
from edgenn.environment import Environment, collect_environment, load_average
from edgenn.errors import EdgennError, InputError, ModelFileError, ProviderError, first_line
from edgenn.fileio import atomic_path, check_file_target
from edgenn.runtime.inputs import ORT_TYPES
from edgenn.specs import BATCH, TensorSpec
from edgenn.stats import RatioSummary, Summary, paired_ratio, summarize
from edgenn.versions import edgenn_version

PROVIDER_CHOICES = ("cpu", "cuda", "tensorrt", "all")
ALL_PROVIDERS = ("cpu", "cuda", "tensorrt")
CLOCK = time.perf_counter_ns  # read once per block; tests put a fake clock here to inject timings
MIN_ROUNDS = 6  # with --seconds, at least this many rounds run, even past the time budget

METHOD = (
    "per point: warm-up per variant, then rounds in which every variant makes a block of back-to-back "
    "calls (order rotating); each call timed alone with perf_counter_ns around the call only, garbage "
    "collector paused; latency figures pool all timed calls; throughput = batch / median latency; "
    "speedup = median over rounds of (baseline block median / variant block median), with a "
    "distribution-free 95% interval; cpu_ms = process CPU time per call, read between blocks; GPU "
    "providers bind inputs and outputs on the device (IO binding)"
)


# ------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class BenchOptions:
    providers: tuple[str, ...] = ("cpu",)  # cpu | cuda | tensorrt | all | auto | an ORT provider name
    threads: tuple[int, ...] = (1,)  # intra-op threads of ORT and torch.set_num_threads for eager
    batches: tuple[int, ...] = (1,)
    warmup: int = 10  # untimed calls per variant before each point
    runs: int | None = None  # timed calls per variant per point; None: run for `seconds`
    seconds: float = 1.0  # time budget of one point (all variants together) when runs is None
    rounds: int = 25  # rounds per point (fewer when runs is smaller)
    inputs: tuple[TensorSpec, ...] = ()  # sizes of dynamic dims other than batch, by input name
    seed: int = 0

    def checked(self) -> BenchOptions:
        if not self.providers:
            raise InputError("no provider given: use --provider cpu, cuda, tensorrt or all")
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
            providers=_unique(self.providers),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "providers": list(self.providers),
            "threads": list(self.threads),
            "batches": list(self.batches),
            "warmup": self.warmup,
            "runs": self.runs,
            "seconds": None if self.runs else self.seconds,
            "rounds": self.rounds,
            "inputs": [s.to_dict() for s in self.inputs],
            "seed": self.seed,
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
    """One variant at one point of the sweep. Times in milliseconds."""

    variant: str
    provider: str  # the --provider choice this point belongs to
    providers_used: tuple[str, ...]  # what the session really got (ORT can fall back silently)
    device: str  # "cpu" | "cuda"
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
    speedup: RatioSummary | None  # baseline time / this variant's time, paired per round (>1: faster)

    @property
    def waited_for_cpu(self) -> bool:
        """A one-thread CPU run whose calls took 20% more wall time than CPU time: preempted."""
        return self.threads == 1 and self.device == "cpu" and self.latency_ms.mean > 1.2 * self.cpu_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "provider": self.provider,
            "providers_used": list(self.providers_used),
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
    provider: str
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
    edgenn_version: str = field(default_factory=edgenn_version)

    @property
    def busy(self) -> bool:
        """Other work competed for the cores at the start or the end: the figures are noisier."""
        end = self.load_average_end
        return self.environment.busy or (end is not None and end[0] > self.environment.usable_cores)

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
        }


# ---------------------------------------------------------------------------------- the harness
Progress = Callable[[int, int, str], None]  # (points done, points in all, what runs now)


def bench(
    models: Sequence[str | Path] = (),
    eager: str | None = None,
    weights: str | Path | None = None,
    options: BenchOptions = BenchOptions(),
    progress: Progress | None = None,
) -> BenchReport:
    """Time each ONNX model (and the eager SOURCE, the baseline where given) over the sweep."""
    options = options.checked()
    if not models and eager is None:
        raise InputError("nothing to bench: give one or more .onnx files and/or --eager SOURCE")
    if weights is not None and eager is None:
        raise InputError("--weights belongs to --eager (a zoo model's trained weights); add --eager MODEL")
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    plan, skipped = provider_plan(options.providers)
    variants = [_inspect_onnx(path, name) for path, name in zip(models, variant_names(models), strict=True)]
    if eager is not None:
        variants.append(_load_eager(eager, weights, options.inputs))
    _resolve_dims(variants, options.inputs)
    environment = collect_environment()
    probe = RssProbe()
    gc.collect()  # once, here: later only young garbage is collected, and none while timing
    results: list[BenchResult] = []
    total, done = len(plan) * len(options.threads) * len(options.batches), 0
    with _torch_threads_restored(any(v.kind == "eager" for v in variants)):
        for choice, chain in plan:
            # Most threads first: growing torch's OpenMP pool after set_num_threads(1) left the eager
            # LSTM at a p90 of 148 ms (median 0.09 ms) on a busy 2-core machine; shrinking it did not.
            for threads in sorted(options.threads, reverse=True):
                opened = []
                for variant in variants:
                    session, reason = _open(variant, choice, chain, threads, probe)
                    if session is None:
                        skipped.append(SkippedPoint(variant.name, choice, threads, None, reason))
                    else:
                        opened.append(session)
                for batch in options.batches:
                    if progress:
                        progress(done, total, f"{choice} threads={threads} batch={batch}")
                    got, skips = _measure_point(opened, choice, threads, batch, options, probe)
                    results += got
                    skipped += skips
                    done += 1
    if progress:
        progress(done, total, "done")
    if not results:
        reasons = "; ".join(dict.fromkeys(s.reason for s in skipped)) or "no point of the sweep could run"
        raise EdgennError(f"nothing measured: {reasons}")
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
    )


def provider_plan(choices: Sequence[str]) -> tuple[list[tuple[str, list[str]]], list[SkippedPoint]]:
    """[(choice, ORT provider chain)] for the available choices; the others as skipped, with why.

    An unknown name is an error; a known provider that this onnxruntime lacks is a skipped point.
    """
    from edgenn.runtime.providers import SHORT_NAMES, available_providers, resolve_providers

    wanted = ALL_PROVIDERS if any(c.strip().lower() == "all" for c in choices) else choices
    plan, skipped = [], []
    for choice in _unique(tuple(wanted)):
        known = choice.strip().lower() in (*SHORT_NAMES, "auto") or choice.strip().endswith("ExecutionProvider")
        try:
            plan.append((choice, resolve_providers(choice)))
        except ProviderError:
            if not known:
                raise ProviderError(
                    f"unknown provider {choice!r}: use one of {', '.join(PROVIDER_CHOICES)} "
                    "or an onnxruntime provider name such as CPUExecutionProvider"
                ) from None
            primary = SHORT_NAMES.get(choice.strip().lower(), (choice.strip(),))[0]
            reason = f"{primary} not available: onnxruntime has only {', '.join(available_providers())}"
            skipped.append(SkippedPoint("*", choice, None, None, reason))
    return plan, skipped


def variant_names(models: Sequence[str | Path]) -> list[str]:
    """File stems (lenet5, lenet5.int8), or the paths as given where two stems collide."""
    stems = [Path(m).name.removesuffix(".onnx") for m in models]
    return [s if stems.count(s) == 1 else str(m) for s, m in zip(stems, models, strict=True)]


# --------------------------------------------------------------------------- variants and inputs
@dataclass
class _Variant:
    """What the harness knows of a variant before any session exists."""

    info: VariantInfo
    path: Path | None = None  # onnx
    module: Any = None  # eager
    load_seconds: float = 0.0  # eager: building the module and loading the weights
    load_memory_mb: float | None = None
    examples: tuple[Any, ...] = ()  # eager: the factory's own example inputs, for dim sizes

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def kind(self) -> str:
        return self.info.kind


def _inspect_onnx(path: str | Path, name: str) -> _Variant:
    """Read the inputs of a model, proving on the way that onnxruntime can load it."""
    from edgenn.runners import OrtRunner

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} not found; export one with `edgenn export`")
    runner = OrtRunner(str(path), ("CPUExecutionProvider",), threads=1, name=name)
    specs = []
    for arg in runner.session.get_inputs():
        dtype = ORT_TYPES.get(arg.type)
        if dtype is None:
            raise InputError(
                f"{path.name}: input {arg.name!r} has type {arg.type}; edgenn bench feeds numeric tensors only"
            )
        dims = tuple(d if isinstance(d, int) else (d or f"dim{i}") for i, d in enumerate(arg.shape))
        if dims and isinstance(dims[0], str):
            dims = (BATCH, *dims[1:])  # whatever its name, a symbolic first dim is the batch
        specs.append(TensorSpec(arg.name, dims, dtype))
    return _Variant(VariantInfo(name, "onnx", str(path), tuple(specs)), path=path)


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
        loaded = load_source(spec, None if weights is None else str(weights))
        if given and loaded.user_examples is None:
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
        if spec.dtype.startswith("float"):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(spec.dtype)
    return feeds


def fixed_batch(specs: Sequence[TensorSpec]) -> int | None:
    """The batch size a model is frozen to (its first input's first dim), or None where it is dynamic."""
    for spec in specs:
        if spec.shape:
            return spec.shape[0] if isinstance(spec.shape[0], int) else None
    return None


# --------------------------------------------------------------------------------- sessions
@dataclass
class _Session:
    variant: _Variant
    prepare: Callable[[dict[str, np.ndarray]], Callable[[], Any]]  # feeds -> the call to time
    providers_used: tuple[str, ...]
    device: str
    seconds: float
    memory_mb: float | None


def _open(
    variant: _Variant, choice: str, chain: list[str], threads: int, probe: RssProbe
) -> tuple[_Session | None, str]:
    """A ready session for one (provider, threads), or None and the reason it cannot run there."""
    if variant.kind == "eager":
        return _open_eager(variant, chain, threads)
    from edgenn.runners import OrtRunner

    gc.collect(1)  # young garbage only: a full collection costs 0.2 s once torch is loaded
    base = probe.start()
    t0 = time.perf_counter()
    try:
        runner = OrtRunner(str(variant.path), chain, threads=threads, name=variant.name)
    except ModelFileError as exc:
        return None, f"{chain[0]} could not open {variant.name}: {exc}"
    seconds = time.perf_counter() - t0
    used = tuple(runner.session.get_providers())
    if used[0] != chain[0]:  # ORT falls back to the CPU silently when a GPU provider fails to start
        return None, (
            f"{chain[0]} did not start (onnxruntime fell back to {used[0]}); check that the CUDA / "
            "TensorRT libraries it needs are installed and a GPU is visible"
        )
    return _Session(variant, runner.prepared_call, used, runner.device, seconds, probe.growth_mb(base)), ""


def _open_eager(variant: _Variant, chain: list[str], threads: int) -> tuple[_Session | None, str]:
    import torch

    device = "cuda" if chain[0] != "CPUExecutionProvider" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        return (
            None,
            f"eager PyTorch cannot run on the GPU here (torch {torch.__version__} sees no CUDA device)",
        )
    torch.set_num_threads(threads)
    module = variant.module.to(device)
    names = [s.name for s in variant.info.inputs]
    label = (f"torch-{device}",)
    return _Session(
        variant,
        lambda feeds: torch_call(module, feeds, names, device),
        label,
        device,
        variant.load_seconds,
        variant.load_memory_mb,
    ), ""


def torch_call(module: Any, feeds: Mapping[str, np.ndarray], names: Sequence[str], device: str) -> Callable[[], Any]:
    """module(*inputs) under inference_mode, as users run it; on the GPU it waits for the kernels."""
    import torch

    tensors = tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])).to(device) for n in names)
    inference = torch.inference_mode
    if device == "cpu":

        def call() -> Any:
            with inference():
                return module(*tensors)

        return call
    sync = torch.cuda.synchronize

    def call_and_wait() -> Any:
        with inference():
            out = module(*tensors)
        sync()
        return out

    return call_and_wait


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
    sessions: Sequence[_Session],
    choice: str,
    threads: int,
    batch: int,
    options: BenchOptions,
    probe: RssProbe,
) -> tuple[list[BenchResult], list[SkippedPoint]]:
    skipped, ready = [], []
    for s in sessions:
        frozen = fixed_batch(s.variant.info.inputs)
        if frozen is not None and frozen != batch:
            skipped.append(
                SkippedPoint(
                    s.variant.name,
                    choice,
                    threads,
                    batch,
                    f"the model's batch dimension is fixed at {frozen}; bench it with --batch {frozen}",
                )
            )
        else:
            ready.append(s)
    if not ready:
        return [], skipped
    calls, per_call, memory = [], [], []
    for s in ready:  # warm-up one variant at a time, so that memory growth is its own
        gc.collect(1)
        base = probe.start()
        feeds = make_feeds(s.variant.info.inputs, batch, options.seed)
        call = s.prepare(feeds)
        with _failing_inputs_explained(s.variant.name, feeds):
            warm = time_calls(call, max(options.warmup, 0 if options.runs else 1))
        memory.append(probe.growth_mb(base))
        calls.append(call)
        per_call.append(float(np.median(warm[len(warm) // 2 :])) / 1e9 if warm.size else 0.0)
    blocks = plan_rounds(per_call, options.runs, options.seconds, options.rounds)
    with _failing_inputs_explained("a variant", {}):  # reached only where there was no warm-up
        measured = run_rounds(calls, blocks)
    base_index = _baseline_index(ready)
    round_medians = [measured.round_medians(i) for i in range(len(ready))]
    results = []
    for i, s in enumerate(ready):
        times = measured.times[i]
        latency = summarize(times).scaled(1e-6)
        speedup = None if i == base_index else paired_ratio(round_medians[base_index], round_medians[i])
        results.append(
            BenchResult(
                variant=s.variant.name,
                provider=choice,
                providers_used=s.providers_used,
                device=s.device,
                threads=threads,
                batch=batch,
                latency_ms=latency,
                throughput=batch / (latency.median / 1e3),
                runs=int(times.size),
                cpu_ms=measured.cpu_ns[i] / times.size / 1e6,
                rounds=len(blocks),
                session_seconds=s.seconds,
                session_memory_mb=s.memory_mb,
                run_memory_mb=memory[i],
                baseline=None if i == base_index else ready[base_index].variant.name,
                speedup=speedup,
            )
        )
    return results, skipped


@contextlib.contextmanager
def _failing_inputs_explained(variant: str, feeds: Mapping[str, np.ndarray]) -> Iterator[None]:
    """A model that raises on the bench's inputs is a one-line error naming them, not a traceback."""
    try:
        yield
    except Exception as exc:
        shapes = ", ".join(f"{name} {'x'.join(map(str, a.shape))} {a.dtype}" for name, a in feeds.items())
        on = f" on {shapes}" if shapes else ""
        raise EdgennError(f"{variant} fails{on}: {first_line(exc)}; check the sizes given with --input") from None


def _baseline_index(sessions: Sequence[_Session]) -> int:
    """The eager model where it runs at this point, else the first ONNX variant."""
    return next((i for i, s in enumerate(sessions) if s.variant.kind == "eager"), 0)


def plan_rounds(
    per_call_seconds: Sequence[float], runs: int | None, seconds: float, rounds: int
) -> list[tuple[int, ...]]:
    """Calls per variant in each round: [(calls of variant 0, calls of variant 1, ...), ...].

    With `runs`, each variant makes exactly `runs` calls spread over min(rounds, runs) rounds. With
    a time budget, each variant gets an equal share of `seconds` at its warm-up speed, in `rounds`
    rounds (fewer when the slowest variant fits fewer calls, never fewer than MIN_ROUNDS).
    """
    k = len(per_call_seconds)
    if runs is not None:
        count = min(rounds, runs)
        return [(runs // count + (1 if r < runs % count else 0),) * k for r in range(count)]
    share = seconds / k
    fits = [max(1, int(share / t)) if t > 0 else 1 for t in per_call_seconds]
    count = max(min(rounds, min(fits)), min(MIN_ROUNDS, rounds))
    return [tuple(max(1, f // count) for f in fits)] * count


@dataclass(frozen=True)
class Rounds:
    """What run_rounds measured, per variant."""

    times: list[np.ndarray]  # ns per call, in the order made
    bounds: list[list[int]]  # offsets into times where each round's block starts (and the last ends)
    cpu_ns: list[int]  # process CPU time (all threads) over the variant's blocks, read between blocks

    def round_medians(self, variant: int) -> list[float]:
        t, b = self.times[variant], self.bounds[variant]
        return [float(np.median(t[start:end])) for start, end in zip(b[:-1], b[1:], strict=True)]


def run_rounds(calls: Sequence[Callable[[], Any]], blocks: Sequence[Sequence[int]]) -> Rounds:
    """Time the calls in rounds, rotating who goes first in each round."""
    k = len(calls)
    times = [np.empty(sum(b[v] for b in blocks), dtype=np.int64) for v in range(k)]
    bounds: list[list[int]] = [[0] for _ in range(k)]
    cpu_ns = [0] * k
    cpu_clock = time.process_time_ns
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r, sizes in enumerate(blocks):
            for j in range(k):
                v = (r + j) % k
                cpu_start = cpu_clock()  # outside the timed calls: a CPU clock read is a system call
                _time_block(calls[v], times[v], bounds[v][-1], sizes[v])
                cpu_ns[v] += cpu_clock() - cpu_start
                bounds[v].append(bounds[v][-1] + sizes[v])
    finally:
        if was_enabled:
            gc.enable()
    return Rounds(times, bounds, cpu_ns)


def time_calls(call: Callable[[], Any], count: int) -> np.ndarray:
    """`count` calls, each timed alone (ns)."""
    times = np.empty(count, dtype=np.int64)
    _time_block(call, times, 0, count)
    return times


def _time_block(call: Callable[[], Any], out: np.ndarray, start: int, count: int) -> None:
    # The lean loop: nothing but the call between the two clock reads.
    clock = CLOCK
    for i in range(start, start + count):
        t0 = clock()
        call()
        out[i] = clock() - t0


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
    "providers_used",
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
                "providers_used": " ".join(r.providers_used),
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
    many_providers = len({r.provider for r in report.results}) > 1
    many_threads = len({r.threads for r in report.results}) > 1
    for r in report.results:
        label = r.variant + (f" [{r.provider}]" if many_providers else "") + (f" t={r.threads}" if many_threads else "")
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
