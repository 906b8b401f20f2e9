"""The frontier: is edgenn's tuned deployment as fast as the best thing a user could run instead?

For every zoo model (models/<name>/model.onnx, fp32 classifiers of sklearn's digits), at each batch
size and thread count, five contenders are timed side by side in one interleaved run per point
(edgenn.timing's harness: warm-up, then rounds of blocks, the order rotating each round):

    tuned        edgenn.runtime.Model(models/<name>/deploy, threads=t).predict(x): edgenn tune's choice
                 (the folder `edgenn build` writes; where it is missing, one is tuned here first)
    ort          a plain onnxruntime CPU session on model.onnx, intra_op_num_threads=t
    edgenn-int8  edgenn.quantize static int8 QDQ (dynamic int8 where static quantizes nothing, as
                 in the recurrent models), on a plain onnxruntime CPU session
    openvino     OpenVINO alone (the `openvino` package, no onnxruntime) on model.onnx
    nncf-int8    NNCF post-training int8 of model.onnx (300 digits training samples), on OpenVINO

and the figure is tuned's time over the *best peer* (the fastest of the other four at that point),
paired per round, with its distribution-free 95% interval (edgenn.stats.paired_ratio): below 1 the
tuned deployment is faster than everything else measured, above 1 something beat it. Each
contender's accuracy on the digits test split (argmax of the first output) is measured once per
model, on the same files. The timing inputs are the first `batch` digits test inputs.

    python tools/frontier.py                                   # every zoo model, batch 1 and 64, 1 and all cores
    python tools/frontier.py --models lenet5,mlp --seconds 2 --json frontier.json
    python tools/frontier.py --markdown > frontier.md          # a README table on stdout, progress on stderr

openvino and nncf are optional (`pip install -c constraints.txt -e ".[frontier]"`); where one is
missing, or cannot handle a model, its column says "-" and the skip reason is printed below the table
and kept in the JSON.
On a machine where other programs run, one-thread rows whose calls took 20% more wall time than
CPU time are flagged (a call waited for a core), the "load" column gives the 1-minute load average
as each point began (this process counts about 1), and a note says when it passed the core count:
rerun those figures on an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
TUNED = "tuned"
PEERS = ("ort", "edgenn-int8", "openvino", "nncf-int8")
CONTENDERS = (TUNED, *PEERS)
WARMUP_CALLS = 20
NNCF_SAMPLES = 300
WAIT_FACTOR = 1.2  # wall time over CPU time per call above which a one-thread call waited for a core (as bench)
LIBRARIES = ("edgenn", "onnxruntime", "onnxruntime-ep-openvino", "openvino", "nncf", "onnx", "numpy", "scikit-learn")

Call = Callable[[], Any]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:240]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence what quantizers and compilers print (NNCF draws progress bars on stdout)."""
    from edgenn.quiet import silenced

    with silenced():
        yield


def first_rows(inputs: np.ndarray, batch: int) -> np.ndarray:
    """The first `batch` samples, cycling where there are fewer; contiguous, so no contender copies."""
    return np.ascontiguousarray(inputs[np.arange(batch) % len(inputs)])


# ------------------------------------------------------------------------------------ contenders
@dataclass
class Contender:
    """One way to run a model: `open(threads, x)` gives the call to time; `scores(x)` the first output."""

    name: str
    open: Callable[[int, np.ndarray], Call] | None = None
    scores: Callable[[np.ndarray], np.ndarray] | None = None
    skip: str | None = None  # why it does not run on this model here
    note: str = ""  # what it is, where that is not obvious (the quantization mode, the route tuned took)
    accuracy: float | None = None
    by_batch: dict[int, float] = field(default_factory=dict)  # tuned: accuracy of the route each batch size takes
    departures: list[str] = field(default_factory=list)  # tuned: where Model departed from what tune measured


def skipped(name: str, reason: str) -> Contender:
    return Contender(name, skip=reason)


def ort_contender(name: str, path: Path, input_name: str, note: str = "") -> Contender:
    """A plain onnxruntime CPU session, one per thread count."""
    import onnxruntime as ort

    sessions: dict[int, Any] = {}

    def session(threads: int) -> Any:
        if threads not in sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.log_severity_level = 3
            sessions[threads] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return sessions[threads]

    def open_call(threads: int, x: np.ndarray) -> Call:
        run, feed = session(threads).run, {input_name: x}
        return lambda: run(None, feed)

    def scores(x: np.ndarray) -> np.ndarray:
        return session(cores()).run(None, {input_name: x})[0]

    return Contender(name, open_call, scores, note=note)


def openvino_contender(name: str, path: Path, note: str = "") -> Contender:
    """OpenVINO's own runtime: the ONNX file read by its frontend, compiled for the CPU plugin.

    The batch (and the recurrent models' time) dimension is dynamic in the zoo's files; OpenVINO
    runs a model reshaped to the exact input shape faster (lenet5 at batch 1: 0.18 ms against 0.21
    dynamic, measured here), so each (threads, shape) gets its own compiled model, as a deployment
    with a known batch would. One stream and INFERENCE_NUM_THREADS=t make it comparable with an
    onnxruntime session of t intra-op threads. Each call wraps the caller's array in a Tensor that
    shares its memory (onnxruntime also reads numpy input in place), runs the request and copies
    the first output out, as onnxruntime returns fresh arrays: on mlp at batch 1 that took 0.046 ms
    against 0.061 for `request.infer({0: x}, share_inputs=True)`, whose result dictionary costs
    more than the model (measured here). Binding one tensor once and only calling infer() is
    faster still (0.029 ms), but then the call never takes a new array: not what ort is asked to do.
    """
    try:
        import openvino as ov
    except ImportError:
        return skipped(name, "the openvino package is not installed (pip install openvino)")
    core = ov.Core()
    compiled: dict[tuple[int, tuple[int, ...]], Any] = {}

    def request(threads: int, shape: tuple[int, ...]) -> Any:
        key = (threads, shape)
        if key not in compiled:
            model = core.read_model(str(path))
            model.reshape({model.inputs[0].get_any_name(): list(shape)})
            config = {"NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(threads)}
            compiled[key] = core.compile_model(model, "CPU", config).create_infer_request()
        return compiled[key]

    def open_call(threads: int, x: np.ndarray) -> Call:
        req = request(threads, x.shape)
        tensor, bind, infer, output = ov.Tensor, req.set_input_tensor, req.infer, req.get_output_tensor

        def call() -> np.ndarray:
            bind(tensor(x, shared_memory=True))
            infer()
            return output(0).data.copy()

        return call

    def scores(x: np.ndarray) -> np.ndarray:
        return open_call(cores(), np.ascontiguousarray(x))()

    try:
        core.read_model(str(path))  # a model its ONNX frontend cannot read is a skip, found here
    except Exception as exc:
        return skipped(name, f"OpenVINO cannot read {path.name}: {one_line(exc)}")
    return Contender(name, open_call, scores, note=note)


def tuned_contender(
    model: str, folder: Path | None, work: Path, args: argparse.Namespace, test: np.ndarray, labels: np.ndarray
) -> Contender:
    """Model(deploy folder, threads=t); the folder is models/<name>/deploy, or tuned here where missing."""
    from edgenn.errors import EdgennError
    from edgenn.runtime import Model

    note = ""
    if folder is None:
        from edgenn.tune import TuneOptions, tune

        folder = work / "deploy"
        options = TuneOptions(
            batches=tuple(args.batch), threads=tuple(args.threads), time_budget=args.tune_budget, force=True
        )
        why = "--fresh-tune" if args.fresh_tune else f"no models/{model}/deploy"
        say(f"[{model}] {why}: tuning a deployment here ({args.tune_budget:g} s budget)")
        try:
            with quiet():
                tune(MODELS / model / "model.onnx", folder, options)
        except EdgennError as exc:
            return skipped(TUNED, f"edgenn tune failed: {one_line(exc)}")
        note = "tuned here"
    members: dict[int, Any] = {}
    departures: list[str] = []

    def member(threads: int) -> Any:
        if threads not in members:
            # Model warns once when the deployment departs from what was measured (another machine,
            # an untuned thread count); that is worth a line in the report, not a warning mid-table
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                members[threads] = Model(folder, threads=threads)
            departures.extend(f"threads={threads}: {w.message}" for w in caught)
        return members[threads]

    def open_call(threads: int, x: np.ndarray) -> Call:
        predict = member(threads).predict
        return lambda: predict(x)

    try:
        default = Model(folder)  # the default thread count: what an app that passes nothing gets
    except EdgennError as exc:
        return skipped(TUNED, f"the deployment in {folder} does not load: {one_line(exc)}")
    first = default.outputs[0].name
    routes = ", ".join(f"{_range(r)}: {r.candidate.id}" for r in default.routes)
    # Accuracy per route: the test split in chunks of each measured batch size, so every route the
    # timing takes is scored (chunks of 1 go where batch 1 goes, of 64 where batch 64 goes).
    by_batch = {}
    for batch in args.batch:
        chunks = [default.predict(test[i : i + batch])[first] for i in range(0, len(test), batch)]
        by_batch[batch] = float(np.mean(np.concatenate(chunks).argmax(axis=1) == labels))
    # the worst route's accuracy is the one figure: what some batch size gets
    note = "; ".join(filter(None, [note, f"routes at default threads {routes}"]))
    return Contender(
        TUNED, open_call, note=note, accuracy=min(by_batch.values()), by_batch=by_batch, departures=departures
    )


def _range(route: Any) -> str:
    return f"{route.batch_min}+" if route.batch_max is None else f"{route.batch_min}-{route.batch_max}"


def edgenn_int8_contender(source: Path, work: Path, input_name: str) -> Contender:
    """edgenn.quantize static int8 QDQ; dynamic where static has nothing it can quantize (LSTM, GRU)."""
    from edgenn.errors import EdgennError
    from edgenn.evaluate import LatencyOptions
    from edgenn.quantize import QuantizeOptions, quantize

    # quantize measures its own latency too; one short round is enough, the frontier times it properly
    latency = LatencyOptions(batch_sizes=(1,), rounds=1, repeats=1, warmup=1)
    reasons = []
    for mode in ("static", "dynamic"):
        target = work / f"int8-{mode}.onnx"
        try:
            with quiet():
                result = quantize(source, target, QuantizeOptions(mode=mode, latency=latency))
        except EdgennError as exc:
            reasons.append(f"{mode}: {one_line(exc)}")
            continue
        kept = ", ".join(k.node for k in result.kept_float) or "none"
        note = f"{mode} int8 ({result.recipe.name}; kept float: {kept})"
        if reasons:
            note += f"; {reasons[0]}"
        return ort_contender("edgenn-int8", target, input_name, note)
    return skipped("edgenn-int8", "; ".join(reasons))


def nncf_contender(source: Path, work: Path, input_name: str, calibration: np.ndarray) -> Contender:
    """NNCF post-training quantization of the ONNX file (its ONNX backend writes QDQ), run on OpenVINO."""
    try:
        with quiet():
            import nncf
            import onnx
    except ImportError as exc:
        return skipped("nncf-int8", f"{exc.name or 'nncf'} is not installed (pip install nncf)")
    if version("openvino") is None:
        return skipped("nncf-int8", "the openvino package is not installed (pip install openvino): nothing to run on")
    target = work / "nncf-int8.onnx"
    try:
        # one sample per calibration step, as NNCF's examples do; it gathers min/max over all 300
        dataset = nncf.Dataset(list(calibration), lambda sample: {input_name: sample[None]})
        with quiet():
            quantized = nncf.quantize(onnx.load(str(source)), dataset, subset_size=len(calibration))
        onnx.save(quantized, str(target))
    except Exception as exc:  # NNCF raises its own errors and plain ones alike for graphs it cannot handle
        return skipped("nncf-int8", f"nncf.quantize failed: {one_line(exc)}")
    ops = {n.op_type for n in quantized.graph.node}
    float_compute = sorted(ops & {"LSTM", "GRU", "RNN"})
    note = f"int8 QDQ by NNCF {version('nncf')}" + (
        f"; {', '.join(float_compute)} stay float (only the Gemm/MatMul/Conv around them are int8)"
        if float_compute
        else ""
    )
    return openvino_contender("nncf-int8", target, note)


# ---------------------------------------------------------------------------------- one model
@dataclass
class Point:
    model: str
    threads: int
    batch: int
    median_ms: dict[str, float | None]
    rounds: int
    best_peer: str | None
    ratio: dict[str, float] | None
    waited_for_cpu: bool
    load_average: float | None
    skips: dict[str, str] = field(default_factory=dict)  # contenders that failed at this point only

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def digits_inputs(model_path: Path) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(input name, test inputs, test labels, NNCF's calibration inputs) from the model's stored preprocessing."""
    from edgenn.data import load_digits_split
    from edgenn.errors import InputError
    from edgenn.runtime import Model

    model = Model(model_path, providers="cpu")
    if model.preprocessing is None or len(model.inputs) != 1:
        raise InputError(f"{model_path} has no edgenn preprocessing metadata or more than one input")
    digits = load_digits_split()
    train = digits.train.inputs(model.preprocessing)
    pick = np.sort(np.random.default_rng(0).choice(len(train), size=min(NNCF_SAMPLES, len(train)), replace=False))
    # a writeable copy: the digits arrays are frozen, and OpenVINO shares memory only with writeable arrays
    test = np.array(digits.test.inputs(model.preprocessing), order="C", copy=True)
    return model.inputs[0].name, test, np.asarray(digits.test.labels), np.ascontiguousarray(train[pick])


def contenders_for(model: str, work: Path, args: argparse.Namespace) -> tuple[list[Contender], np.ndarray]:
    source = MODELS / model / "model.onnx"
    input_name, test, labels, calibration = digits_inputs(source)
    deploy = MODELS / model / "deploy"
    folder = deploy if (deploy / "deploy.json").is_file() and not args.fresh_tune else None
    say(f"[{model}] preparing: tuned deployment, edgenn int8, NNCF int8, OpenVINO")
    found = [
        tuned_contender(model, folder, work, args, test, labels),
        ort_contender("ort", source, input_name),
        edgenn_int8_contender(source, work, input_name),
        openvino_contender("openvino", source),
        nncf_contender(source, work, input_name, calibration),
    ]
    for c in found:
        if c.skip is None and c.scores is not None:
            try:
                c.accuracy = float(np.mean(c.scores(test).argmax(axis=1) == labels))
            except Exception as exc:  # a contender that loads but cannot run is a skip, not a traceback
                c.skip = f"does not run: {one_line(exc)}"
    return found, test


def measure_point(
    model: str, contenders: list[Contender], test: np.ndarray, threads: int, batch: int, args: argparse.Namespace
) -> Point:
    x = first_rows(test, batch)
    names, calls, skips = [], [], {}
    for c in contenders:
        if c.skip is not None:
            continue
        try:
            call = c.open(threads, x)
            call()  # fails here, not inside the harness
        except Exception as exc:
            skips[c.name] = one_line(exc)
            continue
        names.append(c.name)
        calls.append(call)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    median_ms: dict[str, float | None] = dict.fromkeys(CONTENDERS)
    if not calls:
        return Point(model, threads, batch, median_ms, 0, None, None, False, load, skips)
    from edgenn import timing
    from edgenn.stats import paired_ratio

    measured = timing.side_by_side(calls, WARMUP_CALLS, runs=None, seconds=args.seconds, rounds=args.rounds)
    for i, name in enumerate(names):
        median_ms[name] = measured.median_seconds(i) * 1e3
    waited = threads == 1 and any(
        measured.times[i].mean() > WAIT_FACTOR * measured.cpu_ns[i] / measured.times[i].size for i in range(len(names))
    )
    peers = [n for n in names if n != TUNED]
    best = min(peers, key=lambda n: median_ms[n]) if peers else None
    ratio = None
    if best is not None and TUNED in names:
        r = paired_ratio(measured.round_medians(names.index(TUNED)), measured.round_medians(names.index(best)))
        ratio = {"median": r.median, "ci_low": r.ci_low, "ci_high": r.ci_high, "ci_level": r.ci_level}
    return Point(model, threads, batch, median_ms, len(measured.bounds[0]) - 1, best, ratio, waited, load, skips)


# -------------------------------------------------------------------------------------- output
def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def ratio_text(p: Point) -> tuple[str, str]:
    if p.ratio is None:
        return "-", "-"
    return f"{p.ratio['median']:.2f}x", f"[{p.ratio['ci_low']:.2f}, {p.ratio['ci_high']:.2f}]"


def rows_for_table(points: list[Point]) -> list[list[str]]:
    rows = []
    for p in points:
        ratio, interval = ratio_text(p)
        rows.append(
            [
                p.model,
                str(p.threads),
                str(p.batch),
                *(ms(p.median_ms[c]) for c in CONTENDERS),
                p.best_peer or "-",
                ratio,
                interval,
                "-" if p.load_average is None else f"{p.load_average:.1f}",
                "yes: rerun" if p.waited_for_cpu else "",
            ]
        )
    return rows


HEADERS = [
    "model",
    "threads",
    "batch",
    *(f"{c} ms" for c in CONTENDERS),
    "best peer",
    "tuned/best",
    "95% CI",
    "load",
    "waited",
]


def accuracy_rows(models: dict[str, list[Contender]]) -> list[list[str]]:
    rows = []
    for model, contenders in models.items():
        cells = []
        for c in contenders:
            if c.accuracy is None:
                cells.append("-")
            elif len(set(c.by_batch.values())) > 1:  # tuned routes batch sizes to files that differ
                cells.append(" / ".join(f"b{b} {100 * a:.2f}%" for b, a in c.by_batch.items()))
            else:
                cells.append(f"{100 * c.accuracy:.2f}%")
        rows.append([model, *cells])
    return rows


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def notes_for(models: dict[str, list[Contender]], points: list[Point]) -> list[str]:
    notes = []
    for model, contenders in models.items():
        for c in contenders:
            if c.skip:
                notes.append(f"{model} {c.name}: skipped: {c.skip}")
            elif c.note:
                notes.append(f"{model} {c.name}: {c.note}")
            notes += [f"{model} tuned: {d}" for d in c.departures]
    for p in points:
        notes += [f"{p.model} threads={p.threads} batch={p.batch} {n}: skipped: {r}" for n, r in p.skips.items()]
    # The 1-minute load average counts this process too (about 1 at one thread); above the core count
    # other programs competed for the cores, and multi-thread rows suffer most (a thread descheduled
    # in a parallel region stalls the whole call), which the one-thread "waited" check cannot see.
    loads = [p.load_average for p in points if p.load_average is not None]
    if loads and max(loads) > cores():
        notes.append(
            f"load average reached {max(loads):.1f} on {cores()} cores: other programs were running, "
            "so the figures (multi-thread rows most) are noisy; rerun on an idle machine"
        )
    return notes


def environment() -> dict[str, Any]:
    from edgenn.runtime.cpuinfo import cpu_flags, cpu_model

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_flags": list(cpu_flags()),
        "cores": cores(),
        "python": platform.python_version(),
        "libraries": {name: version(name) for name in LIBRARIES},
    }


# ---------------------------------------------------------------------------------------- main
def numbers(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return list(dict.fromkeys(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    zoo = sorted(p.name for p in MODELS.iterdir() if (p / "model.onnx").is_file())
    parser.add_argument("--models", help=f"comma list (default: all of {', '.join(zoo)})")
    parser.add_argument("--batch", type=numbers, default=[1, 64], help="batch sizes (default 1,64)")
    all_cores = list(dict.fromkeys([1, cores()]))
    parser.add_argument("--threads", type=numbers, default=all_cores, help="thread counts (default 1 and all cores)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per point, all contenders (default 3)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per point (default 15)")
    parser.add_argument("--tune-budget", type=float, default=90.0, help="edgenn tune's budget where no deploy/")
    parser.add_argument("--fresh-tune", action="store_true", help="tune here even where models/<name>/deploy exists")
    parser.add_argument("--json", metavar="PATH", help="write every figure, the CPU and library versions as JSON")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables (for a README) instead")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",")] if args.models else zoo
    unknown = [n for n in names if n not in zoo]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; the zoo has {', '.join(zoo)}")
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be positive and --rounds at least 1")
    args.batch.sort()

    from edgenn.errors import EdgennError

    started = time.perf_counter()
    env = environment()
    say(f"frontier on {env['cpu_model']} ({env['cores']} cores): {', '.join(names)}")
    models: dict[str, list[Contender]] = {}
    points: list[Point] = []
    model_skips: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edgenn-frontier-") as tmp:
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            try:
                contenders, test = contenders_for(name, work, args)
            except EdgennError as exc:
                model_skips[name] = one_line(exc)
                say(f"[{name}] skipped: {model_skips[name]}")
                continue
            models[name] = contenders
            for threads in args.threads:
                for batch in args.batch:
                    point = measure_point(name, contenders, test, threads, batch, args)
                    points.append(point)
                    ratio, interval = ratio_text(point)
                    say(f"[{name}] threads={threads} batch={batch}: tuned/{point.best_peer} {ratio} {interval}")
            for c in contenders:
                c.open = c.scores = None  # sessions and compiled models go before the next model is built
    seconds = time.perf_counter() - started

    accuracy_headers = ["model", *(f"{c} acc" for c in CONTENDERS)]
    notes = notes_for(models, points) + [f"{m}: skipped: {r}" for m, r in model_skips.items()]
    title = (
        f"tuned deployment against the best peer on {env['cpu_model']} ({env['cores']} cores), "
        f"median ms per call, tuned/best < 1: tuned is faster"
    )
    if args.markdown:
        print(f"{title}\n\n{markdown(HEADERS, rows_for_table(points))}\n")
        print(f"Accuracy on the digits test split:\n\n{markdown(accuracy_headers, accuracy_rows(models))}\n")
        print("\n".join(f"- {n}" for n in notes))
    else:
        from edgenn.report import table

        print(table(HEADERS, rows_for_table(points), title=title))
        print()
        print(table(accuracy_headers, accuracy_rows(models), title="accuracy on the digits test split"))
        if notes:
            print("\n" + "\n".join(notes))
    if args.json:
        record = {
            "environment": env,
            "options": {k: v for k, v in vars(args).items() if k not in ("json", "markdown")},
            "seconds": round(seconds, 1),
            "points": [p.to_dict() for p in points],
            "accuracy": {
                m: {
                    c.name: {"accuracy": c.accuracy, "by_batch": c.by_batch or None, "skip": c.skip, "note": c.note}
                    for c in cs
                }
                for m, cs in models.items()
            },
            "notes": notes,
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    say(f"done in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
