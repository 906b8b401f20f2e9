"""`edgenn tune`: the fastest deployment of a model that holds an accuracy budget, measured on this machine.

    result = tune("lenet5.onnx", "lenet5-deploy", TuneOptions(batches=(1, 64), time_budget=90))
    Model("lenet5-deploy").predict(x)     # the runtime applies what tune chose, by batch size

The candidates are the fp32 file and every registered recipe's file (edgenn.recipes), each on every
provider and precision present (fp32 only in reduced precisions; recipes that need session options
on the CPU provider, whose optimisers they change). Each is scored on the selection data (the digits
validation split, or half of the user's labelled data) against fp32 on the CPU provider; those within
the budget are timed on this machine with edgenn.timing's interleaved harness, per thread count and
batch size: a quick pass over all, then the leaders again, longer, beside the plain fp32 file. The
figures reported are on data the choice never saw (the digits test split, the other half).

A candidate replaces the plain fp32 file at a point only where its paired speedup's 95% interval
lies above 1 (so the choice is never slower than not tuning), and a simpler one (fp32 before
int8, the CPU provider before others) is kept where it is within SIMPLER_MARGIN of the fastest.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgenn import calibration, recipes, timing
from edgenn.bench import session_plan
from edgenn.calibration import Samples
from edgenn.errors import EdgennError, InputError, first_line
from edgenn.evaluate import accuracy, evaluation_runner, optimised_kernels, predict
from edgenn.fileio import check_folder_target, scratch_folder, staged_folder
from edgenn.quantize import QuantizeOptions, _ort_logs_quiet, _Workshop, finalised, read_model
from edgenn.runtime.deploy import (
    DEPLOY_FILE,
    CandidateRecord,
    Deployment,
    Profile,
    Route,
    Timing,
    file_sha256,
    this_machine,
)
from edgenn.runtime.session import OrtRunner, SessionConfig
from edgenn.stats import paired_ratio
from edgenn.versions import edgenn_version

FP32 = "fp32"
FP32_FILE = "model.onnx"
REFERENCE = "fp32@cpu"  # what every accuracy and speed is measured against: the plain file, plain session
PRECISIONS = ("f32", "bf16", "f16")  # reduced precisions are tried where the provider's device offers them

DEFAULT_BUDGET_S = 90.0
QUICK_SHARE = 0.35  # of the timing time left after building: the first pass over every candidate
FINAL_SHARE = 0.60  # the leaders' pass (the rest is margin for writing the folder)
LEADER_SPAN = 1.25  # candidates within this factor of the quick pass's fastest go on to the final pass
MAX_LEADERS = 4
SIMPLER_MARGIN = 1.02  # a simpler candidate this close to the fastest is kept: closer is noise
QUICK_ROUNDS, FINAL_ROUNDS = 6, 15
MIN_POINT_SECONDS = 0.5  # per point (threads x batch) and pass, whatever the budget
SETUP_SECONDS = 20.0  # pre-processing, calibration and building the recipes' files, on a small model


@dataclass(frozen=True)
class TuneOptions:
    batches: tuple[int, ...] = (1, 64)
    threads: tuple[int, ...] = ()  # () = every core, then 1 (the first is Model(DIR)'s default)
    providers: tuple[str, ...] = ("all",)  # every provider present
    max_accuracy_drop: float = 0.5  # percentage points, on labelled selection data
    max_output_error: float = 0.01  # unlabelled data: max |out - fp32| / max |fp32|, first output
    time_budget: float = DEFAULT_BUDGET_S  # seconds for the whole tune
    recipes: tuple[str, ...] = recipes.names()
    calibration: str | None = None  # .npz of inputs; default: the digits training split
    eval_data: str | None = None  # .npz of inputs (+ labels); default: digits validation and test splits
    samples: int = 256  # calibration samples
    seed: int = 0
    force: bool = False  # replace an existing output folder
    verbose: bool = False

    def checked(self) -> TuneOptions:
        if not self.batches or min(self.batches) < 1:
            raise InputError("--batch needs positive batch sizes, e.g. --batch 1,64")
        threads = self.threads or tuple(dict.fromkeys((_cores(), 1)))
        if min(threads) < 1:
            raise InputError("--threads needs positive thread counts, e.g. --threads 1,2")
        for name in self.recipes:
            recipes.get(name)  # unknown names: one line listing the valid ones
        if not (math.isfinite(self.max_accuracy_drop) and self.max_accuracy_drop >= 0):
            raise InputError("--max-accuracy-drop must be a finite number of percentage points, 0 or more")
        if not (math.isfinite(self.max_output_error) and self.max_output_error >= 0):
            raise InputError("--max-output-error must be a finite fraction, 0 or more")
        if self.samples < 1:
            raise InputError("--samples must be at least 1")
        points = len(set(threads)) * len(set(self.batches))
        least = minimum_budget(points)
        if not (math.isfinite(self.time_budget) and self.time_budget >= least):
            raise InputError(
                f"--time-budget {self.time_budget:g} s is too small for {points} point(s) (threads x batch): "
                f"give at least {least:g} s, or fewer --batch / --threads"
            )
        return replace(
            self,
            batches=tuple(sorted(set(self.batches))),
            threads=tuple(dict.fromkeys(threads)),
            recipes=tuple(dict.fromkeys(self.recipes)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": list(self.batches),
            "threads": list(self.threads),
            "providers": list(self.providers),
            "max_accuracy_drop": self.max_accuracy_drop,
            "max_output_error": self.max_output_error,
            "time_budget": self.time_budget,
            "recipes": list(self.recipes),
            "calibration": self.calibration,
            "eval_data": self.eval_data,
            "samples": self.samples,
            "seed": self.seed,
        }


def minimum_budget(points: int) -> float:
    """The least --time-budget that leaves each point its two passes."""
    return SETUP_SECONDS + 2 * MIN_POINT_SECONDS * points


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class TuneResult:
    folder: str
    deployment: Deployment
    budget_met: bool  # some candidate beyond the plain fp32 file held the budget
    skipped: tuple[str, ...]  # configurations and recipes that could not be tried here, with why
    seconds: float
    # where the chosen deployment spends its time, per node (edgenn.profile), at each route of the default
    # thread count
    node_profiles: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "budget_met": self.budget_met,
            "seconds": round(self.seconds, 2),
            "skipped": list(self.skipped),
            "deployment": self.deployment.to_dict(),
            "node_profiles": [p.to_dict() for p in self.node_profiles],
        }


Step = Callable[[str], None]


# ---------------------------------------------------------------------------------- candidates
@dataclass
class _Candidate:
    id: str
    recipe: str
    file: str  # name in the deployment folder
    path: Path  # where it is while tuning
    config: SessionConfig  # threads unset: each profile sets its own
    rank: int  # simplicity: lower is simpler, kept where it is about as fast
    selection_accuracy: float | None = None
    test_accuracy: float | None = None
    drop_points: float | None = None
    output_error: float | None = None
    within_budget: bool = False
    note: str = ""
    timings: list[Timing] = field(default_factory=list)


@dataclass(frozen=True)
class _Data:
    selection: Samples
    report: Samples | None  # None: no held-out data (the selection data is reported)
    labelled: bool
    description: dict[str, Any]


def _data(source: Any, options: TuneOptions) -> _Data:
    """Selection and report data: the digits validation and test splits, or the user's data split in two."""
    if options.eval_data:
        given = calibration.load_npz(options.eval_data, source.inputs, "--eval-data", labelled=False)
        with np.load(options.eval_data, allow_pickle=False) as raw:
            labelled = calibration.LABELS_KEY in raw.files
        if labelled:
            given = calibration.load_npz(options.eval_data, source.inputs, "--eval-data", labelled=True)
        if len(given) < 2:
            raise InputError(f"--eval-data {options.eval_data!r} holds {len(given)} sample(s); give at least 2")
        order = np.random.default_rng(options.seed).permutation(len(given))
        half = len(given) // 2
        pick, hold = np.sort(order[:half]), np.sort(order[half:])

        def part(index: np.ndarray, what: str) -> Samples:
            feeds = {k: np.ascontiguousarray(v[index]) for k, v in given.feeds.items()}
            labels = None if given.labels is None else given.labels[index]
            return Samples(feeds, labels, f"{given.source}, {what} ({len(index)} samples, seed {options.seed})")

        selection, report = part(pick, "selection half"), part(hold, "held-out half")
        return _Data(
            selection,
            report,
            labelled,
            {"selection": selection.source, "report": report.source, "labelled": labelled},
        )
    prep = calibration.read_preprocessing(source.model)
    selection = calibration.digits_samples(source.inputs, prep, "val", "--eval-data")
    report = calibration.digits_samples(source.inputs, prep, "test", "--eval-data")
    return _Data(selection, report, True, {"selection": selection.source, "report": report.source, "labelled": True})


def _plan(options: TuneOptions) -> tuple[list[SessionConfig], list[str]]:
    configs, skipped = session_plan(options.providers, PRECISIONS)
    cpu = SessionConfig().checked()
    if cpu not in configs:
        configs.insert(0, cpu)  # the reference runs whatever --providers says
    # reduced precisions are tried where offered: a device without them is not worth a line
    missing = [s for s in skipped if not s.provider.endswith((" bf16", " f16"))]
    return configs, [f"{s.provider}: {s.reason}" for s in missing]


def _config_rank(config: SessionConfig, configs: Sequence[SessionConfig]) -> int:
    return 0 if config.provider == "cpu" and config.precision == "f32" else 1 + configs.index(config)


# ---------------------------------------------------------------------------------------- public
def tune(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: TuneOptions = TuneOptions(),
    on_step: Step | None = None,
) -> TuneResult:
    """Measure fp32 and every recipe on every provider here, and write the winners to the folder `output`.

    `output` appears whole or not at all: the folder is written beside it and renamed into place.
    """
    started = time.perf_counter()
    step = on_step or (lambda _text: None)
    options = options.checked()
    output = _check_output(Path(output), options.force)
    source = read_model(model)
    configs, skipped = _plan(options)
    data = _data(source, options)
    fixed = source.fixed_batch
    if fixed is not None and any(b != fixed for b in options.batches):
        raise InputError(f"the model's batch dimension is fixed at {fixed}; tune it with --batch {fixed}")
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with scratch_folder("tune") as work, _ort_logs_quiet(options.verbose):
        work_dir = Path(work)
        candidates = _candidates(source, options, configs, work_dir, skipped, step)
        _score(candidates, source, data, options, step)
        left = options.time_budget - (time.perf_counter() - started)
        points = [(t, b) for t in options.threads for b in options.batches]
        per_point = max(MIN_POINT_SECONDS, left / len(points))
        routes: dict[int, list[tuple[int, str, list[str]]]] = {t: [] for t in options.threads}
        for threads in options.threads:
            runners = _open_runners(candidates, threads)
            for batch in options.batches:
                step(f"timing threads={threads} batch={batch} ({len(runners)} candidates)")
                choice, ranking = _measure_point(candidates, runners, data.selection, threads, batch, per_point)
                routes[threads].append((batch, choice, ranking))
            del runners
        deployment, budget_met = _deployment(source, candidates, routes, data, options, configs, created)
        step("profiling the choice per node")
        node_profiles = _node_profiles(candidates, deployment, data)
        step("writing the deployment folder")
        _write(output, deployment, candidates)
    seconds = time.perf_counter() - started
    return TuneResult(str(output), deployment, budget_met, tuple(skipped), seconds, node_profiles)


def _node_profiles(candidates: Sequence[_Candidate], deployment: Deployment, data: _Data) -> tuple[Any, ...]:
    """The chosen candidate of each route at the default thread count, profiled per node at the largest
    batch the route was measured at: what `edgenn bench --profile` shows, for the deployment shipped."""
    from edgenn.profile import profile_model

    by_id = {c.id: c for c in candidates}
    default = deployment.profiles[0]
    out = []
    for route in default.routes:
        chosen = by_id.get(route.choice)
        if chosen is None or not route.measured_at:
            continue
        batch = max(route.measured_at)
        config = replace(chosen.config, threads=default.threads)
        try:
            out.append(profile_model(chosen.path, config, data.selection.batch(batch), label=chosen.id))
        except EdgennError:
            continue  # it was timed a moment ago; a profiler that will not start costs the report one section
    return tuple(out)


def _check_output(output: Path, force: bool) -> Path:
    return check_folder_target(output, force, DEPLOY_FILE, "deployment", InputError)


def _candidates(
    source: Any, options: TuneOptions, configs: Sequence[SessionConfig], work: Path, skipped: list[str], step: Step
) -> list[_Candidate]:
    """Build each recipe's file once, and pair every file with the sessions it is tried on."""
    fp32_path = work / FP32_FILE
    shutil.copyfile(source.path, fp32_path)
    found = [_Candidate(f"{FP32}@{c.label}", FP32, FP32_FILE, fp32_path, c, _config_rank(c, configs)) for c in configs]
    if not options.recipes:
        return found
    shop = _Workshop(
        str(work / "workshop"),
        source,
        QuantizeOptions(
            mode="static",
            calibration=options.calibration,
            samples=options.samples,
            seed=options.seed,
            verbose=options.verbose,
        ),
        step,
    )
    shop.folder.mkdir()
    if any(recipes.get(r).mode == "static" for r in options.recipes):
        shop.calibration_samples()  # data problems are found before the long work
    shop.preprocess()
    files: dict[str, tuple[str, Path] | None] = {}
    for order, name in enumerate(options.recipes, start=1):
        recipe = recipes.get(name)
        key = recipe.file_key
        if key not in files:
            files[key] = _build_file(shop, source, recipe, work, skipped, step)
        built = files[key]
        if built is None:
            continue
        file_name, path = built
        for config in configs:
            if config.precision != "f32":
                continue  # reduced precision is fp32's; a recipe's file already fixes its types
            if recipe.needs_session_options and config.provider != "cpu":
                continue  # the options it changes are the CPU provider's graph optimisers
            rank = 100 * order + _config_rank(config, configs)
            found.append(_Candidate(f"{name}@{config.label}", name, file_name, path, recipe.session(config), rank))
    return found


def _build_file(
    shop: _Workshop, source: Any, recipe: recipes.Recipe, work: Path, skipped: list[str], step: Step
) -> tuple[str, Path] | None:
    step(f"building {recipe.file_key}")
    try:
        built = shop.build(recipe, shop.default_float(recipe))
    except EdgennError as exc:
        skipped.append(f"{recipe.name}: {exc}")
        return None
    if recipe.int8 and not optimised_kernels(built.path).int8_compute:
        why = "; ".join(dict.fromkeys(f"{k.op_type}: {k.reason}" for k in built.kept)) or "nothing to quantize"
        skipped.append(f"{recipe.name}: quantized no compute node ({why})")
        return None
    calib = shop.calibration_source if recipe.mode == "static" else None
    file_name = f"model.{recipe.file_key}.onnx"
    path = work / file_name
    path.write_bytes(finalised(built, source, None, calib))
    return file_name, path


def _score(candidates: list[_Candidate], source: Any, data: _Data, options: TuneOptions, step: Step) -> None:
    """Accuracy (or output error) of every candidate on the selection data, against fp32 on the CPU provider."""
    step(f"scoring {len(candidates)} candidates on {data.selection.source}")
    fixed = source.fixed_batch
    reference = next(c for c in candidates if c.id == REFERENCE)
    ref_runner = evaluation_runner(reference.path, config=reference.config)  # a failure here is the model's
    if ref_runner.info.note:
        raise EdgennError(f"the fp32 model does not run plainly on the CPU provider: {ref_runner.info.note}")
    ref_selection = predict(ref_runner, data.selection, fixed)
    ref_report = predict(ref_runner, data.report, fixed) if data.report is not None else None
    ref_accuracy = accuracy(ref_selection, data.selection.labels) if data.labelled else None
    scale = float(np.max(np.abs(ref_selection[0]))) or 1.0
    for c in candidates:
        try:
            runner = ref_runner if c is reference else evaluation_runner(c.path, config=c.config)
            if runner.info.note:
                raise EdgennError(runner.info.note)
            outputs = ref_selection if c is reference else predict(runner, data.selection, fixed)
            held = None
            if data.report is not None and data.labelled:
                held = ref_report if c is reference else predict(runner, data.report, fixed)
        except EdgennError as exc:
            c.note = f"could not run: {first_line(exc)}"
            continue
        c.output_error = float(np.max(np.abs(outputs[0].astype(np.float64) - ref_selection[0]))) / scale
        if data.labelled:
            c.selection_accuracy = accuracy(outputs, data.selection.labels)
            c.drop_points = 100.0 * (ref_accuracy - c.selection_accuracy)
            c.test_accuracy = accuracy(held, data.report.labels) if held is not None else None
            c.within_budget = c.drop_points <= options.max_accuracy_drop + 1e-9
            if not c.within_budget:
                c.note = f"drops {c.drop_points:.2f} points (budget {options.max_accuracy_drop:g})"
        else:
            c.within_budget = c.output_error <= options.max_output_error
            if not c.within_budget:
                c.note = f"output error {c.output_error:.3g} (budget {options.max_output_error:g})"


# -------------------------------------------------------------------------------------- timing
def _open_runners(candidates: Sequence[_Candidate], threads: int) -> dict[str, OrtRunner]:
    runners = {}
    for c in candidates:
        if c.within_budget:
            runners[c.id] = evaluation_runner(c.path, config=replace(c.config, threads=threads))
    return runners


def _measure_point(
    candidates: Sequence[_Candidate],
    runners: dict[str, OrtRunner],
    samples: Samples,
    threads: int,
    batch: int,
    seconds: float,
) -> tuple[str, list[str]]:
    """Time every candidate at one point, then the leaders again; record the figures; (choice, ranking)."""
    by_id = {c.id: c for c in candidates}
    feeds = samples.batch(batch)
    ids = list(runners)
    calls = {i: runners[i].prepared_call(feeds) for i in ids}
    quick = timing.side_by_side(
        [calls[i] for i in ids], warmup=3, runs=None, seconds=seconds * QUICK_SHARE, rounds=QUICK_ROUNDS
    )
    quick_ms = {i: 1000.0 * quick.median_seconds(k) for k, i in enumerate(ids)}
    quick_rounds = {i: quick.round_medians(k) for k, i in enumerate(ids)}
    best = min(quick_ms.values())
    leaders = [i for i in sorted(ids, key=quick_ms.__getitem__) if quick_ms[i] <= best * LEADER_SPAN][:MAX_LEADERS]
    anchors = [REFERENCE] + [i for i in ids if by_id[i].recipe == FP32 and by_id[i].config.provider == "openvino"][:1]
    final_ids = list(dict.fromkeys([*anchors, *leaders]))
    final = timing.side_by_side(
        [calls[i] for i in final_ids], warmup=2, runs=None, seconds=seconds * FINAL_SHARE, rounds=FINAL_ROUNDS
    )
    final_ms = {i: 1000.0 * final.median_seconds(k) for k, i in enumerate(final_ids)}
    final_rounds = {i: final.round_medians(k) for k, i in enumerate(final_ids)}
    for i in ids:
        stage, ms, rounds, ref = (
            ("final", final_ms[i], final_rounds[i], final_rounds[REFERENCE])
            if i in final_ms
            else ("quick", quick_ms[i], quick_rounds[i], quick_rounds[REFERENCE])
        )
        ratio = None if i == REFERENCE else paired_ratio(ref, rounds)
        by_id[i].timings.append(
            Timing(
                threads,
                batch,
                ms,
                1.0 if ratio is None else ratio.median,
                1.0 if ratio is None else ratio.ci_low,
                1.0 if ratio is None else ratio.ci_high,
                stage,
            )
        )
    # Only a candidate whose paired speedup is above 1 across its whole interval may replace the plain file.
    faster = [i for i in final_ids if i == REFERENCE or by_id[i].timings[-1].speedup_low > 1.0]
    fastest = min(final_ms[i] for i in faster)
    close = [i for i in faster if final_ms[i] <= fastest * SIMPLER_MARGIN]
    choice = min(close, key=lambda i: by_id[i].rank)
    ranking = sorted(final_ids, key=final_ms.__getitem__) + sorted(
        (i for i in ids if i not in final_ms), key=quick_ms.__getitem__
    )
    ranking.remove(choice)
    return choice, [choice, *ranking]


# ---------------------------------------------------------------------------------- the record
def _deployment(
    source: Any,
    candidates: Sequence[_Candidate],
    routes: dict[int, list[tuple[int, str, list[str]]]],
    data: _Data,
    options: TuneOptions,
    configs: Sequence[SessionConfig],
    created: str,
) -> tuple[Deployment, bool]:
    by_id = {c.id: c for c in candidates}
    shipped = {REFERENCE}
    for points in routes.values():
        for _batch, choice, ranking in points:
            shipped.add(choice)
            # where the chosen provider is missing on the machine that runs it, the best CPU one takes over
            shipped.add(next(i for i in ranking if by_id[i].config.provider == "cpu"))
    profiles = []
    for threads, points in routes.items():
        profiles.append(Profile(threads, tuple(_ranges(points, shipped))))
    notes = []
    reduced = [c for c in candidates if not (c.recipe == FP32 and c.config.precision == "f32")]
    budget_met = not reduced or any(c.within_budget for c in reduced)
    if not budget_met:
        budget = (
            f"{options.max_accuracy_drop:g} points"
            if data.labelled
            else f"an output error of {options.max_output_error:g}"
        )
        notes.append(f"no recipe or reduced precision held the budget of {budget}: the deployment is the fp32 file")
    if all(choice == REFERENCE for points in routes.values() for _b, choice, _r in points):
        notes.append("the plain fp32 file on the CPU provider was the fastest at every point measured")
    files = sorted({by_id[i].file for i in shipped})
    records = tuple(
        CandidateRecord(
            id=c.id,
            recipe=c.recipe,
            file=c.file,
            session=c.config,
            shipped=c.id in shipped,
            within_budget=c.within_budget,
            selection_accuracy=c.selection_accuracy,
            test_accuracy=c.test_accuracy,
            drop_points=c.drop_points,
            output_error=c.output_error,
            timings=tuple(c.timings),
            note=c.note,
        )
        for c in candidates
    )
    reference = by_id[REFERENCE]
    deployment = Deployment(
        machine=this_machine([c.label for c in configs]),
        profiles=tuple(profiles),
        candidates=records,
        files=tuple((name, "") for name in files),  # digests are filled in as the files are written
        source={"file": source.path.name, "sha256": file_sha256(source.path)},
        budget={
            "max_accuracy_drop": options.max_accuracy_drop if data.labelled else None,
            "max_output_error": None if data.labelled else options.max_output_error,
            "reference": REFERENCE,
            "fp32_selection_accuracy": reference.selection_accuracy,
            "fp32_test_accuracy": reference.test_accuracy,
            **data.description,
        },
        options=options.to_dict(),
        notes=tuple(notes),
        created=created,
        edgenn_version=edgenn_version(),
    )
    return deployment, budget_met


def _ranges(points: Sequence[tuple[int, str, list[str]]], shipped: set[str]) -> Iterator[Route]:
    """Batch ranges around the measured sizes, split at geometric midpoints, equal neighbours merged."""
    bounds = [
        math.isqrt(a * b) for (a, _, _), (b, _, _) in zip(points[:-1], points[1:], strict=True)
    ]  # batch 1 and 64 split at 8: 1-8 -> batch 1's choice, 9+ -> batch 64's
    pending: Route | None = None
    for k, (batch, choice, ranking) in enumerate(points):
        low = 1 if k == 0 else bounds[k - 1] + 1
        high = bounds[k] if k < len(bounds) else None
        order = tuple(i for i in ranking if i in shipped)
        if pending is not None and pending.choice == choice:
            pending = replace(pending, batch_max=high, measured_at=(*pending.measured_at, batch))
            continue
        if pending is not None:
            yield pending
        pending = Route(low, high, choice, order, (batch,))
    if pending is not None:
        yield pending


def _write(output: Path, deployment: Deployment, candidates: Sequence[_Candidate]) -> None:
    """The folder beside `output`, then renamed into place: a killed tune leaves the old folder (or none)."""
    import json

    sources = {c.file: c.path for c in candidates}
    with staged_folder(output) as staging:
        digests = []
        for name, _ in deployment.files:
            shutil.copyfile(sources[name], staging / name)
            digests.append((name, file_sha256(staging / name)))
        record = replace(deployment, files=tuple(digests))
        (staging / DEPLOY_FILE).write_text(json.dumps(record.to_dict(), indent=2) + "\n", encoding="utf-8")
