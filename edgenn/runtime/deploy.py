"""A tuned deployment folder (`edgenn tune`'s output): deploy.json read, checked and resolved for this machine.

    deployment = load_deployment("lenet5-deploy")     # every file present and unchanged, or one line why
    routes, notes = resolve(deployment, "lenet5-deploy", threads=1)
    routes[0].config, routes[0].path                  # the session and file for batches routes[0].batch_min..max

deploy.json holds, per thread count measured, the batch ranges and the candidate chosen for each,
with the candidates ranked behind it; every candidate's session configuration and figures; the
machine it was measured on; and the sha256 of every file. On another machine, or where a provider
is missing, `resolve` takes the best candidate that can run and says why (strict: an error).
numpy and onnxruntime only, like the rest of the runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgenn.errors import ModelFileError, ProviderError
from edgenn.runtime.cpuinfo import cpu_flags, cpu_model
from edgenn.runtime.session import SessionConfig, unavailable

DEPLOY_FILE = "deploy.json"
DEPLOY_FORMAT = "edgenn.deploy"
DEPLOY_VERSION = 1
# What decides which deployment is fastest; the versions of what runs the model count too.
_RUNTIME_LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-ep-openvino")


# ------------------------------------------------------------------------------------ the machine
@dataclass(frozen=True)
class Machine:
    """What a deployment's speed figures depend on: the CPU, its instruction sets, cores and libraries."""

    cpu_model: str
    cpu_flags: tuple[str, ...]
    cores: int
    libraries: tuple[tuple[str, str], ...]  # (package, version) of onnxruntime and its provider plugins
    providers: tuple[str, ...] = ()  # the providers present when measured (informative: not compared)

    def differences(self, other: Machine) -> list[str]:
        """What differs from `other`, in words; empty where the figures carry over."""
        found = []
        if self.cpu_model != other.cpu_model:
            found.append(f"CPU {other.cpu_model!r}, measured on {self.cpu_model!r}")
        elif self.cpu_flags != other.cpu_flags:
            found.append(f"CPU flags {' '.join(other.cpu_flags)}, measured with {' '.join(self.cpu_flags)}")
        if self.cores != other.cores:
            found.append(f"{other.cores} cores, measured on {self.cores}")
        ours, theirs = dict(self.libraries), dict(other.libraries)
        for name in sorted(set(ours) | set(theirs)):
            if ours.get(name) != theirs.get(name):
                found.append(f"{name} {theirs.get(name) or 'absent'}, measured with {ours.get(name) or 'none'}")
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_model": self.cpu_model,
            "cpu_flags": list(self.cpu_flags),
            "cores": self.cores,
            "libraries": dict(self.libraries),
            "providers": list(self.providers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Machine:
        return cls(
            str(data["cpu_model"]),
            tuple(str(f) for f in data.get("cpu_flags", ())),
            int(data.get("cores", 0)),
            tuple(sorted((str(k), str(v)) for k, v in dict(data.get("libraries", {})).items())),
            tuple(str(p) for p in data.get("providers", ())),
        )

    @property
    def fingerprint(self) -> str:
        """A short digest of what `differences` compares: equal fingerprints, transferable figures."""
        key = json.dumps([self.cpu_model, self.cpu_flags, self.cores, self.libraries])
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def this_machine(providers: Sequence[str] = ()) -> Machine:
    """The machine this process runs on (tests replace it to play another machine)."""
    from importlib import metadata

    libraries = []
    for name in _RUNTIME_LIBRARIES:
        try:
            libraries.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return Machine(cpu_model(), cpu_flags(), cores, tuple(sorted(libraries)), tuple(providers))


# ----------------------------------------------------------------------------------- the record
@dataclass(frozen=True)
class Timing:
    """One candidate at one point (threads, batch): median ms, and its speed against the plain fp32 file
    on the CPU provider measured side by side (>1: faster), with a 95% interval."""

    threads: int
    batch: int
    median_ms: float
    speedup: float | None
    speedup_low: float | None
    speedup_high: float | None
    stage: str  # "final": measured properly among the leaders; "quick": the first pass only

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "batch": self.batch,
            "median_ms": round(self.median_ms, 6),
            "speedup": _rounded(self.speedup),
            "speedup_low": _rounded(self.speedup_low),
            "speedup_high": _rounded(self.speedup_high),
            "stage": self.stage,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timing:
        return cls(
            int(data["threads"]),
            int(data["batch"]),
            float(data["median_ms"]),
            data.get("speedup"),
            data.get("speedup_low"),
            data.get("speedup_high"),
            str(data.get("stage", "final")),
        )


@dataclass(frozen=True)
class CandidateRecord:
    """A model file (fp32 or a recipe's) on one session configuration, and what it measured."""

    id: str  # "<recipe>@<session label>": fp32@cpu, static-qdq@openvino bf16
    recipe: str  # "fp32" or a registered recipe's name
    file: str  # the file's name; in the folder only if `shipped`
    session: SessionConfig  # threads are the profile's
    shipped: bool
    within_budget: bool
    selection_accuracy: float | None  # labelled data: accuracy where the choice was made
    test_accuracy: float | None  # labelled data: accuracy reported (held out)
    drop_points: float | None  # selection accuracy lost against fp32 on the CPU provider
    output_error: float | None  # relative error of the first output against fp32 (selection data)
    timings: tuple[Timing, ...] = ()
    note: str = ""  # why it was not measured, or what the provider did with it

    def timing(self, threads: int, batch: int) -> Timing | None:
        return next((t for t in self.timings if (t.threads, t.batch) == (threads, batch)), None)

    def to_dict(self) -> dict[str, Any]:
        session = self.session.to_dict()
        session.pop("threads")
        return {
            "id": self.id,
            "recipe": self.recipe,
            "file": self.file,
            "shipped": self.shipped,
            "session": session,
            "within_budget": self.within_budget,
            "selection_accuracy": _rounded(self.selection_accuracy),
            "test_accuracy": _rounded(self.test_accuracy),
            "drop_points": _rounded(self.drop_points),
            "output_error": _rounded(self.output_error),
            "timings": [t.to_dict() for t in self.timings],
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CandidateRecord:
        return cls(
            id=str(data["id"]),
            recipe=str(data["recipe"]),
            file=str(data["file"]),
            session=SessionConfig.from_dict(data["session"]),
            shipped=bool(data.get("shipped", False)),
            within_budget=bool(data.get("within_budget", False)),
            selection_accuracy=data.get("selection_accuracy"),
            test_accuracy=data.get("test_accuracy"),
            drop_points=data.get("drop_points"),
            output_error=data.get("output_error"),
            timings=tuple(Timing.from_dict(t) for t in data.get("timings", ())),
            note=str(data.get("note", "")),
        )


@dataclass(frozen=True)
class Route:
    """Batches batch_min..batch_max (None: no upper bound) go to `choice`; `ranking` is the order to fall
    back in, fastest first (the choice leads it), among the candidates shipped in the folder."""

    batch_min: int
    batch_max: int | None
    choice: str
    ranking: tuple[str, ...]
    measured_at: tuple[int, ...]  # the batch sizes measured that this range covers

    def covers(self, batch: int) -> bool:
        return batch >= self.batch_min and (self.batch_max is None or batch <= self.batch_max)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_min": self.batch_min,
            "batch_max": self.batch_max,
            "choice": self.choice,
            "ranking": list(self.ranking),
            "measured_at": list(self.measured_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Route:
        top = data.get("batch_max")
        return cls(
            int(data["batch_min"]),
            None if top is None else int(top),
            str(data["choice"]),
            tuple(str(r) for r in data.get("ranking", (data["choice"],))),
            tuple(int(b) for b in data.get("measured_at", ())),
        )


@dataclass(frozen=True)
class Profile:
    """The routes measured at one thread count."""

    threads: int
    routes: tuple[Route, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "routes": [r.to_dict() for r in self.routes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        return cls(int(data["threads"]), tuple(Route.from_dict(r) for r in data["routes"]))


@dataclass(frozen=True)
class Deployment:
    """deploy.json, typed: what was chosen for each thread count and batch range, and everything measured."""

    machine: Machine
    profiles: tuple[Profile, ...]  # the first is the default (the first thread count asked for)
    candidates: tuple[CandidateRecord, ...]
    files: tuple[tuple[str, str], ...]  # (file name, sha256) of every file in the folder but deploy.json
    source: Mapping[str, Any] = field(default_factory=dict)  # the fp32 file tuned: name, sha256
    budget: Mapping[str, Any] = field(default_factory=dict)  # the accuracy budget and the data it was held on
    options: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    created: str = ""
    edgenn_version: str = ""

    def candidate(self, candidate_id: str) -> CandidateRecord:
        for c in self.candidates:
            if c.id == candidate_id:
                return c
        raise ModelFileError(f"{DEPLOY_FILE} routes to candidate {candidate_id!r}, which it does not list")

    def profile(self, threads: int | None) -> Profile:
        """The profile measured at `threads` (None: the default one); KeyError where none was."""
        if threads is None:
            return self.profiles[0]
        for p in self.profiles:
            if p.threads == threads:
                return p
        raise KeyError(threads)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DEPLOY_FORMAT,
            "version": DEPLOY_VERSION,
            "edgenn_version": self.edgenn_version,
            "created": self.created,
            "source": dict(self.source),
            "machine": self.machine.to_dict(),
            "budget": dict(self.budget),
            "profiles": [p.to_dict() for p in self.profiles],
            "files": dict(self.files),
            "candidates": [c.to_dict() for c in self.candidates],
            "notes": list(self.notes),
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        return cls(
            machine=Machine.from_dict(data["machine"]),
            profiles=tuple(Profile.from_dict(p) for p in data["profiles"]),
            candidates=tuple(CandidateRecord.from_dict(c) for c in data["candidates"]),
            files=tuple((str(k), str(v)) for k, v in dict(data["files"]).items()),
            source=dict(data.get("source", {})),
            budget=dict(data.get("budget", {})),
            options=dict(data.get("options", {})),
            notes=tuple(str(n) for n in data.get("notes", ())),
            created=str(data.get("created", "")),
            edgenn_version=str(data.get("edgenn_version", "")),
        )


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


# ---------------------------------------------------------------------------------------- loading
def is_deployment(path: str | os.PathLike[str] | bytes) -> bool:
    return not isinstance(path, (bytes, bytearray)) and Path(path).is_dir()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_deployment(folder: str | os.PathLike[str]) -> Deployment:
    """deploy.json of `folder`, with every file it lists present and unchanged; one line naming the file if not."""
    folder = Path(folder)
    record = folder / DEPLOY_FILE
    if not folder.is_dir():
        raise ModelFileError(f"deployment folder {str(folder)!r} not found; make it with edgenn tune MODEL -o FOLDER")
    if not record.is_file():
        raise ModelFileError(
            f"{str(folder)!r} is a folder without {DEPLOY_FILE}: not a deployment made by edgenn tune "
            "(give a .onnx file, or re-run edgenn tune)"
        )
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{record} is unreadable ({type(exc).__name__}); re-run edgenn tune") from None
    if not isinstance(data, dict) or data.get("format") != DEPLOY_FORMAT:
        raise ModelFileError(f"{record} is not an edgenn deployment record; re-run edgenn tune")
    version = data.get("version")
    if not isinstance(version, int) or version > DEPLOY_VERSION:
        raise ModelFileError(
            f"{record} is format version {version!r}, from a newer edgenn (this one reads up to {DEPLOY_VERSION}); "
            "upgrade edgenn"
        )
    try:
        deployment = Deployment.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{record} is malformed ({type(exc).__name__}: {exc}); re-run edgenn tune") from None
    except ModelFileError as exc:
        raise ModelFileError(f"{record}: {exc}") from None
    if not deployment.profiles or any(not p.routes for p in deployment.profiles):
        raise ModelFileError(f"{record} routes no batch size to a model; re-run edgenn tune")
    listed = dict(deployment.files)
    for name, expected in deployment.files:
        path = folder / name
        if Path(name).name != name:
            raise ModelFileError(f"{record} lists {name!r}, which is not a file of the folder; re-run edgenn tune")
        if not path.is_file():
            raise ModelFileError(f"deployment {str(folder)!r} is incomplete: {name} is missing; re-run edgenn tune")
        if file_sha256(path) != expected:
            raise ModelFileError(
                f"{path} does not match the sha256 in {DEPLOY_FILE}: the file was changed after tuning; "
                "re-run edgenn tune"
            )
    for candidate in deployment.candidates:
        if candidate.shipped and candidate.file not in listed:
            raise ModelFileError(f"{record}: {candidate.id} is shipped in {candidate.file}, which it does not list")
    for profile in deployment.profiles:
        for route in profile.routes:
            for name in route.ranking:
                deployment.candidate(name)
    return deployment


# -------------------------------------------------------------------------------------- resolving
@dataclass(frozen=True)
class ResolvedRoute:
    """A batch range with the session that will serve it on this machine."""

    batch_min: int
    batch_max: int | None
    candidate: CandidateRecord
    path: Path
    config: SessionConfig
    recorded_choice: str  # what tune chose; differs from candidate.id where this machine could not run it
    measured_at: tuple[int, ...] = ()  # the batch sizes tune measured in this range

    def covers(self, batch: int) -> bool:
        return batch >= self.batch_min and (self.batch_max is None or batch <= self.batch_max)


def resolve(
    deployment: Deployment,
    folder: str | os.PathLike[str],
    threads: int | None = None,
    strict: bool = False,
    machine: Machine | None = None,
) -> tuple[tuple[ResolvedRoute, ...], tuple[str, ...]]:
    """The session for each batch range on this machine, and the notes saying where that departs from
    what was measured (another machine, a thread count not measured, a provider missing here).
    With `strict`, any departure is an error instead."""
    folder = Path(folder)
    notes: list[str] = []

    def depart(message: str) -> None:
        if strict:
            raise ProviderError(f"{folder}: {message} (strict: not using the deployment)")
        notes.append(message)

    here = machine or this_machine()
    differs = deployment.machine.differences(here)
    if differs:
        depart(
            f"measured on another machine ({'; '.join(differs)}): its choices may not be the fastest here; "
            f"re-run edgenn tune on this machine"
        )
    try:
        profile = deployment.profile(threads)
    except KeyError:
        measured = [p.threads for p in deployment.profiles]
        profile = min(deployment.profiles, key=lambda p: (abs(p.threads - (threads or 0)), p.threads))
        depart(
            f"tuned at {', '.join(map(str, measured))} thread(s), not {threads}: using the choices made at "
            f"{profile.threads} with {threads} threads"
        )
    run_threads = threads if threads is not None else profile.threads
    routes = []
    for route in profile.routes:
        chosen, reasons = None, []
        for candidate_id in route.ranking:
            candidate = deployment.candidate(candidate_id)
            if not candidate.shipped:
                continue
            config = replace(candidate.session, threads=run_threads)
            reason = unavailable(config)
            if reason is None:
                chosen = (candidate, config)
                break
            reasons.append(f"{candidate.id}: {reason}")
        if chosen is None:
            raise ProviderError(
                f"{folder}: no candidate it ships can run here for batch {_range_text(route)} "
                f"({'; '.join(reasons) or 'none shipped'}); re-run edgenn tune on this machine"
            )
        candidate, config = chosen
        if candidate.id != route.choice:
            depart(f"batch {_range_text(route)}: {route.choice} cannot run here ({reasons[0]}); using {candidate.id}")
        routes.append(
            ResolvedRoute(
                route.batch_min,
                route.batch_max,
                candidate,
                folder / candidate.file,
                config,
                route.choice,
                route.measured_at,
            )
        )
    return tuple(routes), tuple(notes)


def _range_text(route: Route | ResolvedRoute) -> str:
    if route.batch_max is None:
        return f"{route.batch_min}+"
    return str(route.batch_min) if route.batch_min == route.batch_max else f"{route.batch_min}-{route.batch_max}"


def range_text(route: Route | ResolvedRoute) -> str:
    """``1-7``, ``8+``: a batch range for people."""
    return _range_text(route)
