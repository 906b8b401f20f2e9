"""One command from tutorial model to shipped artifact: train -> export -> quantize -> bench -> tune -> card.

Each stage records a content hash of its inputs and settings in `build.json`: the bytes of the
files it reads, its options, the library versions, the source of every edgenn module the stage
imports (found by reading their imports, so that an edit anywhere it reaches redoes it), and for
the stages that measure speed (quantize's auto mode, bench, tune) the machine's fingerprint. A
stage whose hash has not changed and whose outputs are still there is not redone. Every artifact is written
atomically and the record only after its stage finished, so a killed build resumes where it
stopped and never leaves half a file behind.
"""

from __future__ import annotations

import ast
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgenn import _callable_stage, zoo
from edgenn.card import Card
from edgenn.errors import EdgennError
from edgenn.fileio import ensure_writable_folder, remove_stale, write_text_atomic
from edgenn.runtime.deploy import DEPLOY_FILE, this_machine
from edgenn.versions import edgenn_version, library_versions

STAGES = ("train", "export", "quantize", "bench", "tune")
WEIGHTS = "model.safetensors"
TRAIN_RECORD = "train.json"
FP32 = "model.onnx"
QUANTIZED = "model.quant.onnx"
DEPLOY = "deploy"  # edgenn tune's folder: Model("models/<name>/deploy") runs what was fastest here
STATE = "build.json"
CARD_JSON = "card.json"
CARD_MD = "README.md"
# Bumped when a stage's behaviour changes in a way that must invalidate earlier builds.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class BuildOptions:
    models_dir: Path = Path("models")
    force: bool = False
    seed: int = 0
    max_accuracy_drop: float = 0.5
    bench_seconds: float = 1.0  # per batch point, all variants together
    bench_threads: int = 1
    tune_seconds: float = 45.0  # edgenn tune's time budget per model
    tune_threads: tuple[int, ...] = ()  # (): every core, then 1
    verbose: bool = False


@dataclass(frozen=True)
class StageRun:
    stage: str
    skipped: bool  # unchanged inputs: not redone
    seconds: float
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelBuild:
    name: str
    folder: Path
    stages: tuple[StageRun, ...]
    card: Card = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folder": str(self.folder),
            "stages": [s.to_dict() for s in self.stages],
            "card": self.card.to_dict(),
        }


Progress = Callable[[str, str], None]  # (model, what runs now)


def buildable() -> list[str]:
    return [n for n in zoo.names() if zoo.entry(n).trainable]


def build(
    names: Sequence[str], options: BuildOptions = BuildOptions(), progress: Progress | None = None
) -> list[ModelBuild]:
    """Build each zoo model in `names` into `options.models_dir/<name>/`."""
    for name in names:
        if not zoo.entry(name).trainable:
            raise EdgennError(f"{name!r} has no dataset to train on; buildable models: {', '.join(buildable())}")
    root = ensure_writable_folder(options.models_dir)
    return [_build_one(name, root / name, options, progress or (lambda _m, _s: None)) for name in names]


def _build_one(name: str, folder: Path, options: BuildOptions, progress: Progress) -> ModelBuild:
    ensure_writable_folder(folder)
    _remove_leftovers(folder)
    state = _read_state(folder)
    runs: list[StageRun] = []
    damaged_before: str | None = None  # a stage redone because its artifact changed: the later ones follow
    for stage in STAGES:
        key = _stage_key(stage, name, folder, options)
        done = state.get(stage, {})
        outputs_there = all((folder / f).is_file() for f in done.get("outputs", []))
        changed = _changed_artifacts(folder, done) if outputs_there else []
        if changed:
            damaged_before = damaged_before or stage
            progress(name, f"{stage}: {', '.join(changed)} changed since it was built (digest differs): redoing it")
        elif damaged_before is not None and done:
            progress(name, f"{stage}: redoing it, it comes after {damaged_before}, whose artifacts changed")
        elif not options.force and done.get("key") == key and outputs_there:
            runs.append(StageRun(stage, True, 0.0, done.get("summary", "")))
            progress(name, f"{stage}: unchanged")
            continue
        progress(name, stage)
        started = time.perf_counter()
        outputs, summary, record = _STAGE_RUNNERS[stage](
            name, folder, options, lambda text, stage=stage: progress(name, f"{stage}: {text}")
        )
        seconds = time.perf_counter() - started
        state[stage] = {
            "key": key,
            "outputs": outputs,
            "digests": {f: _file_digest(folder / f) for f in outputs},
            "summary": summary,
            "seconds": round(seconds, 2),
            "record": record,
        }
        _write_state(folder, state)
        runs.append(StageRun(stage, False, seconds, summary))
    card = _write_card(name, folder, state, options)
    return ModelBuild(name, folder, tuple(runs), card)


# ----------------------------------------------------------------------------------- the stages
def _train(name: str, folder: Path, options: BuildOptions, step: Callable[[str], None]):
    from edgenn.train import TrainConfig, train

    def on_epoch(stats: Any) -> None:
        if stats.epoch % 10 == 0 or stats.epoch == stats.epochs:
            step(f"epoch {stats.epoch}/{stats.epochs}, val {100 * stats.val_accuracy:.1f}%")

    result = train(TrainConfig.for_model(name, seed=options.seed), folder, on_epoch=on_epoch)
    summary = f"test accuracy {100 * result.test_accuracy:.2f}% in {result.train_seconds:.1f} s"
    return [WEIGHTS, TRAIN_RECORD], summary, result.to_dict() | {"weights": WEIGHTS, "record": TRAIN_RECORD}


def _export(name: str, folder: Path, options: BuildOptions, step: Callable[[str], None]):
    from edgenn.export import ExportOptions, export_source

    result = export_source(
        name, folder / FP32, weights=folder / WEIGHTS, options=ExportOptions(verbose=options.verbose), on_step=step
    ).raise_for_failure()
    record = result.to_dict()
    record["path"] = FP32
    summary = f"{result.exporter} opset {result.opset}, worst max abs error {result.validation.worst_max_abs_error:.2g}"
    return [FP32], summary, record


def _quantize(name: str, folder: Path, options: BuildOptions, step: Callable[[str], None]):
    from edgenn.quantize import QuantizeOptions, quantize

    result = quantize(
        folder / FP32,
        folder / QUANTIZED,
        QuantizeOptions(
            mode="auto", max_accuracy_drop=options.max_accuracy_drop, seed=options.seed, verbose=options.verbose
        ),
        on_step=step,
    )
    record = result.to_dict()
    record["source"], record["output"] = FP32, QUANTIZED
    ev = result.evaluation
    summary = (
        f"{result.recipe.name}: {100 * ev.quantized_accuracy:.2f}% "
        f"({0.0 - ev.drop_points:+.2f} points), {100 * ev.size_ratio:.0f}% of the fp32 size"
    )
    return [QUANTIZED], summary, record


def bench_inputs(name: str) -> tuple[Any, ...]:
    """A zoo model's inputs as benched: dynamic dims other than the batch (the recurrent models'
    sequence) at 8 rows, the digits' own."""
    from edgenn.specs import BATCH, TensorSpec

    return tuple(
        TensorSpec(s.name, tuple(d if isinstance(d, int) or d == BATCH else 8 for d in s.shape), s.dtype)
        for s in zoo.entry(name).inputs
    )


def _bench(name: str, folder: Path, options: BuildOptions, step: Callable[[str], None]):
    from edgenn.bench import BenchOptions, bench

    fixed = bench_inputs(name)
    bench_options = BenchOptions(
        threads=(options.bench_threads,), batches=(1, 64), seconds=options.bench_seconds, inputs=fixed
    )
    report = bench(
        [folder / FP32, folder / QUANTIZED],
        eager=name,
        weights=folder / WEIGHTS,
        options=bench_options,
        progress=lambda done, total, what: step(f"{done}/{total} {what}"),
    )
    rows = []
    for r in report.results:
        rows.append(
            {
                "variant": _variant_label(r.variant),
                "batch": r.batch,
                "threads": r.threads,
                "median_ms": r.latency_ms.median,
                "p90_ms": r.latency_ms.p90,
                "throughput_per_s": r.throughput,
                "speedup_vs_eager": r.speedup.median if r.speedup else None,
            }
        )
    fp32_64 = next((r for r in rows if r["variant"] == "fp32" and r["batch"] == 64), None)
    summary = (
        "measured"
        if fp32_64 is None
        else (f"fp32 batch 64: {fp32_64['median_ms']:.3f} ms, {fp32_64['speedup_vs_eager']:.2f}x eager")
    )
    record = {"rows": rows, "environment": report.environment.to_dict(), "options": bench_options.to_dict()}
    return [], summary, record


def _tune(name: str, folder: Path, options: BuildOptions, step: Callable[[str], None]):
    from edgenn.tune import TuneOptions, tune

    result = tune(
        folder / FP32,
        folder / DEPLOY,
        TuneOptions(
            batches=(1, 64),
            threads=options.tune_threads,
            time_budget=options.tune_seconds,
            max_accuracy_drop=options.max_accuracy_drop,
            seed=options.seed,
            force=True,  # the stage's key decides when it is redone
            verbose=options.verbose,
        ),
        on_step=step,
    )
    d = result.deployment
    points = tuned_points(d)
    outputs = [f"{DEPLOY}/{DEPLOY_FILE}", *(f"{DEPLOY}/{n}" for n, _ in d.files)]
    summary = ", ".join(f"t{p['threads']} b{p['batch']} {p['choice']}" for p in points)
    record = {
        "folder": DEPLOY,
        "machine": d.machine.to_dict(),
        "points": points,
        "budget_met": result.budget_met,
        "notes": list(d.notes),
        "skipped": list(result.skipped),
        "seconds": round(result.seconds, 1),
    }
    return outputs, summary, record


def tuned_points(deployment: Any) -> list[dict[str, Any]]:
    """Per thread count and batch tuned: the choice, its speed beside the plain fp32 file and OpenVINO's."""
    from edgenn.tune import REFERENCE

    reference = deployment.candidate(REFERENCE)
    openvino = next((c for c in deployment.candidates if c.id == "fp32@openvino"), None)
    points = []
    for profile in deployment.profiles:
        for route in profile.routes:
            chosen = deployment.candidate(route.choice)
            for batch in route.measured_at:
                mine, plain = chosen.timing(profile.threads, batch), reference.timing(profile.threads, batch)
                ov = openvino.timing(profile.threads, batch) if openvino is not None else None
                points.append(
                    {
                        "threads": profile.threads,
                        "batch": batch,
                        "choice": chosen.id,
                        "choice_ms": mine.median_ms if mine else None,
                        "speedup": mine.speedup if mine else None,
                        "speedup_low": mine.speedup_low if mine else None,
                        "speedup_high": mine.speedup_high if mine else None,
                        "ort_ms": plain.median_ms if plain else None,
                        "openvino_ms": ov.median_ms if ov else None,
                        "test_accuracy": chosen.test_accuracy,
                    }
                )
    return sorted(points, key=lambda p: (p["threads"], p["batch"]))


_STAGE_RUNNERS = {"train": _train, "export": _export, "quantize": _quantize, "bench": _bench, "tune": _tune}
# The module each stage runs: its key hashes the source of every edgenn module that one imports.
_STAGE_MODULES = {
    "train": "edgenn.train",
    "export": "edgenn.export",
    "quantize": "edgenn.quantize",
    "bench": "edgenn.bench",
    "tune": "edgenn.tune",
}
_MEASURES_SPEED = ("quantize", "bench", "tune")


def _variant_label(variant: str) -> str:
    """bench names variants by file stem ("model", "model.quant") and "eager:<source>"."""
    if variant.startswith("eager:"):
        return "eager"
    return "quantized" if "quant" in variant else "fp32"


# -------------------------------------------------------------------------------------- hashing
def _stage_key(stage: str, name: str, folder: Path, options: BuildOptions) -> str:
    """What a stage's result depends on: its settings, the bytes of the files it reads, the code it runs."""
    # Every library version counts: they shape the results and are written into the artifacts.
    settings: dict[str, Any] = {
        "stage": stage,
        "model": name,
        "recipe": RECIPE_VERSION,
        "libraries": library_versions(),
        "code": _source_digest(import_closure(_STAGE_MODULES[stage])),
    }
    if stage in _MEASURES_SPEED:
        # what was fastest on one machine need not be on another: a new machine redoes these stages
        settings["machine"] = this_machine().fingerprint
    if stage == "train":
        from edgenn.train import TrainConfig

        settings["config"] = asdict(TrainConfig.for_model(name, seed=options.seed))
    elif stage == "export":
        settings["weights"] = _file_digest(folder / WEIGHTS)
    elif stage == "quantize":
        settings["model"] = _file_digest(folder / FP32)
        settings["budget"] = options.max_accuracy_drop
    elif stage == "bench":
        settings["models"] = [_file_digest(folder / FP32), _file_digest(folder / QUANTIZED)]
        settings["bench"] = [options.bench_seconds, options.bench_threads]
    else:
        settings["model"] = _file_digest(folder / FP32)
        settings["tune"] = [options.tune_seconds, list(options.tune_threads), options.max_accuracy_drop, options.seed]
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def import_closure(module: str) -> list[str]:
    """The files of every edgenn module `module` imports, directly or not, at the top or inside functions
    (edgenn imports its heavy dependencies lazily), its packages' __init__ files included; sorted,
    relative to the package."""
    package = Path(__file__).parent
    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in found or not (name == "edgenn" or name.startswith("edgenn.")):
            continue
        path = _module_file(package, name)
        if path is None:
            continue  # an attribute imported from a module (from edgenn.x import y), not a module
        found[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = parts if is_package else parts[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                todo.append(base)
                todo += [f"{base}.{alias.name}" for alias in node.names]
    return sorted(p.relative_to(package).as_posix() for p in found.values())


def _module_file(package: Path, name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for candidate in (package / rel / "__init__.py", package / rel.with_suffix(".py") if rel.parts else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _zoo_file(name: str) -> str:
    return zoo.entry(name).factory.__module__.rsplit(".", 1)[-1] + ".py"


def _file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _changed_artifacts(folder: Path, done: Mapping[str, Any]) -> list[str]:
    """The outputs of a finished stage whose bytes are not those it wrote (a record without digests,
    from an older edgenn, vouches for nothing and blames nothing)."""
    recorded = done.get("digests") or {}
    return [f for f, digest in recorded.items() if _file_digest(folder / f) != digest]


def _read_source(path: Path) -> bytes:
    return path.read_bytes()


def _source_digest(files: Sequence[str]) -> str:
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for rel in files:
        path = package / rel
        digest.update(rel.encode())
        digest.update(_read_source(path) if path.is_file() else b"-")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------- state
def _read_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STATE).read_text()).get("stages", {})
    except (OSError, ValueError, AttributeError):
        return {}


def _write_state(folder: Path, stages: dict[str, Any]) -> None:
    write_text_atomic(folder / STATE, json.dumps({"stages": stages}, indent=2, default=str) + "\n")


def _remove_leftovers(folder: Path) -> None:
    """Temporary files of a build that was killed mid-write (atomic writes leave no other trace); what a
    live process is writing there (an `edgenn quantize -o` into the folder) is left alone."""
    remove_stale(folder)


# ----------------------------------------------------------------------------------------- card
def _write_card(name: str, folder: Path, state: dict[str, Any], options: BuildOptions) -> Card:
    from edgenn.report import render_card
    from edgenn.summary import summarize

    entry = zoo.entry(name)
    summary = summarize(zoo.create(name), entry.inputs, batch_size=1, name=name)
    train, export, quant, bench_, tuned = (state[s]["record"] for s in STAGES)
    ev = quant["evaluation"]
    models_dir = options.models_dir.as_posix()
    card = {
        "model": name,
        "description": entry.description,
        "edgenn_version": edgenn_version(),
        "architecture": {
            "parameters": summary.total_parameters,
            "layers": [
                {"name": r.name, "type": r.kind, "output_shape": list(r.output_shape), "parameters": r.parameters}
                for r in summary.layers
            ],
        },
        "inputs": [s.to_dict() for s in entry.inputs],
        "labels": list(entry.labels),
        "data": {
            "dataset": "scikit-learn digits (bundled, 1,797 8x8 images)",
            "split": "train 1077 / validation 360 / test 360, stratified, seed 0",
            "preprocessing": entry.preprocessing.to_dict() if entry.preprocessing else None,
        },
        "training": {
            "config": train["config"],
            "test_accuracy": train["test_accuracy"],
            "val_accuracy": train["val_accuracy"],
            "best_epoch": train["best_epoch"],
            "train_seconds": train["train_seconds"],
        },
        "export": {
            "file": FP32,
            "exporter": export["exporter"],
            "opset": export["opset"],
            "nodes": export["node_count"],
            "bytes": export["file_bytes"],
            "parity": [
                {
                    "case": p["case"],
                    "max_abs_error": max(o["max_abs_error"] for o in p["outputs"]),
                    "argmax_agreement": min(
                        (o["argmax_agreement"] for o in p["outputs"] if o["argmax_agreement"] is not None), default=None
                    ),
                }
                for p in export["validation"]["parity"]
            ],
            "dynamic_dims": export["validation"]["dynamic_dims"],
        },
        "quantized": {
            "file": QUANTIZED,
            "recipe": quant["recipe"],
            "kept_float": quant["kept_float"],
            "fp32_accuracy": ev["fp32_accuracy"],
            "accuracy": ev["quantized_accuracy"],
            "drop_points": ev["drop_points"],
            "argmax_agreement": ev["argmax_agreement"],
            "max_abs_error": ev["max_abs_error"],
            "bytes": ev["quantized_bytes"],
            "size_ratio": ev["size_ratio"],
            "int8_kernels": ev["kernels"],
            "notes": quant["notes"],
        },
        "weights": {"file": WEIGHTS, "bytes": (folder / WEIGHTS).stat().st_size},
        "latency": {
            "rows": bench_["rows"],
            "threads": options.bench_threads,
            "cpu": bench_["environment"].get("cpu_model"),
        },
        "tuned": {
            "folder": tuned["folder"],
            "cpu": tuned["machine"]["cpu_model"],
            "cores": tuned["machine"]["cores"],
            "providers": tuned["machine"]["providers"],
            "points": tuned["points"],
            "notes": tuned["notes"],
            "skipped": tuned["skipped"],
        },
        "versions": library_versions(),
        "rebuild": [
            f"edgenn build {name} --models-dir {models_dir}",
            f"edgenn train {name} --seed {options.seed} --out {models_dir}/{name}",
            f"edgenn export {name} --weights {models_dir}/{name}/{WEIGHTS} -o {models_dir}/{name}/{FP32}",
            f"edgenn quantize {models_dir}/{name}/{FP32} -o {models_dir}/{name}/{QUANTIZED} --mode auto "
            f"--max-accuracy-drop {options.max_accuracy_drop:g}",
            f"edgenn bench {models_dir}/{name}/{FP32} {models_dir}/{name}/{QUANTIZED} --eager {name} "
            f"--weights {models_dir}/{name}/{WEIGHTS} --batch 1,64 --threads {options.bench_threads}",
            f"edgenn tune {models_dir}/{name}/{FP32} -o {models_dir}/{name}/{DEPLOY} --batch 1,64 "
            f"--time-budget {options.tune_seconds:g} --force"
            + (f" --threads {','.join(map(str, options.tune_threads))}" if options.tune_threads else ""),
        ],
    }
    typed = Card.from_dict(card)  # the one shape every reader of card.json expects
    write_text_atomic(folder / CARD_JSON, json.dumps(typed.to_dict(), indent=2) + "\n")
    write_text_atomic(folder / CARD_MD, render_card(typed))
    return typed


_callable_stage(__name__)  # `edgenn.build(...)` works even after `import edgenn.build`
