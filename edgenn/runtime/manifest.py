"""A package's manifest (`edgenn package`'s record): what is in the folder, and how to prove it on arrival.

    manifest = read_manifest("lenet5-pkg")          # one line naming what is wrong, or the record
    problems = file_problems("lenet5-pkg", manifest)  # every file present, unchanged, and no stranger
    outcome = check_golden(expected, got, case.tolerance)

manifest.json lists every file of the package with its sha256, the model's inputs, outputs, labels
and preprocessing, the session configuration the golden outputs were made with, and the golden
cases: real inputs and the outputs the validated model gave on them, with the tolerance they must
be met within. The manifest carries the sha256 of its own text (taken with that digest written as
64 zeros), so that a changed byte in it is found too, by any client that can hash a file. That is a
check against damage and mistakes, not a signature: whoever can rewrite the folder can rewrite the
digests. numpy and onnxruntime only, like the rest of the runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgenn.errors import ModelFileError
from edgenn.parity import Tolerance, compare_output
from edgenn.runtime.deploy import file_sha256
from edgenn.runtime.session import SessionConfig
from edgenn.specs import TensorSpec

MANIFEST_FILE = "manifest.json"
PACKAGE_FORMAT = "edgenn.package"
PACKAGE_VERSION = 1
KINDS = ("bundle", "ort", "triton")
DIGEST_KEY = "manifest_sha256"
_ZERO_DIGEST = "0" * 64
# An error this small passes a "range" tolerance whatever the output's size (outputs that are all zero).
RANGE_FLOOR = 1e-6


# -------------------------------------------------------------------------------- tolerances
@dataclass(frozen=True)
class GoldenTolerance:
    """How close a run on the target must come to a golden output.

    "elementwise": every element within atol + rtol |golden| (float32 models: export's validation
    tolerance); "range": the largest error within `max_relative` of the largest |golden| (what
    `edgenn compare` calls rel to range), or under RANGE_FLOOR: reduced precision and int8, whose
    rounding may differ between CPUs by a step. Integer and boolean outputs must be equal under both.
    """

    kind: str  # "elementwise" | "range"
    atol: float = 1e-4
    rtol: float = 1e-3
    max_relative: float = 0.0
    why: str = ""

    def describe(self) -> str:
        if self.kind == "elementwise":
            return f"|error| <= {self.atol:g} + {self.rtol:g} |golden|, every element"
        return f"max |error| within {self.max_relative:g} of max |golden|"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "why": self.why}
        if self.kind == "elementwise":
            data.update(atol=self.atol, rtol=self.rtol)
        else:
            data["max_relative"] = self.max_relative
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GoldenTolerance:
        kind = str(data["kind"])
        if kind not in ("elementwise", "range"):
            raise ValueError(f"unknown tolerance kind {kind!r}")
        return cls(
            kind,
            float(data.get("atol", 1e-4)),
            float(data.get("rtol", 1e-3)),
            float(data.get("max_relative", 0.0)),
            str(data.get("why", "")),
        )


@dataclass(frozen=True)
class GoldenOutcome:
    """One output of one golden case, as the target computed it."""

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    relative_to_range: float  # max |error| / max |golden|
    passed: bool
    reason: str = ""  # why it failed where not the figures (a shape, a dtype)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "max_abs_error": self.max_abs_error,
            "relative_to_range": self.relative_to_range,
            "passed": self.passed,
            "reason": self.reason,
        }


def check_golden(name: str, golden: np.ndarray, got: np.ndarray, tolerance: GoldenTolerance) -> GoldenOutcome:
    """`got` against the golden output under `tolerance`."""
    golden, got = np.asarray(golden), np.asarray(got)
    if golden.shape != got.shape:
        reason = f"shape {list(got.shape)}, golden {list(golden.shape)}"
        return GoldenOutcome(name, tuple(got.shape), float("inf"), float("inf"), False, reason)
    if golden.dtype != got.dtype:
        reason = f"dtype {got.dtype}, golden {golden.dtype}"
        return GoldenOutcome(name, tuple(got.shape), float("inf"), float("inf"), False, reason)
    if golden.dtype.kind not in "fc":  # integers and booleans (labels, indices): equal or not
        equal = bool(np.array_equal(golden, got))
        return GoldenOutcome(name, golden.shape, 0.0 if equal else float("inf"), 0.0 if equal else 1.0, equal)
    parity = compare_output(name, golden, got, Tolerance(tolerance.atol, tolerance.rtol), classifier=False)
    finite = np.abs(golden[np.isfinite(golden)]).astype(np.float64)
    scale = float(finite.max()) if finite.size else 0.0
    max_abs = parity.max_abs_error if np.isfinite(parity.max_abs_error) else float("inf")  # NaN: one side only
    relative = max_abs / max(scale, 1e-12) if max_abs else 0.0
    if tolerance.kind == "elementwise":
        passed = parity.passed
    else:
        passed = max_abs <= max(tolerance.max_relative * scale, RANGE_FLOOR)
    return GoldenOutcome(name, golden.shape, max_abs, relative, passed)


# ------------------------------------------------------------------------------------ the record
@dataclass(frozen=True)
class GoldenCase:
    """Inputs and the outputs the validated model gave on them, by tensor name, each in a .npy file."""

    name: str
    batch: int
    inputs: tuple[tuple[str, str], ...]  # (input name, file)
    outputs: tuple[tuple[str, str], ...]  # (output name, file)
    tolerance: GoldenTolerance
    candidate: str = ""  # for a tuned deployment: the candidate that served this batch when packaged

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch": self.batch,
            "inputs": dict(self.inputs),
            "outputs": dict(self.outputs),
            "tolerance": self.tolerance.to_dict(),
            "candidate": self.candidate,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GoldenCase:
        return cls(
            str(data["name"]),
            int(data["batch"]),
            tuple((str(k), str(v)) for k, v in dict(data["inputs"]).items()),
            tuple((str(k), str(v)) for k, v in dict(data["outputs"]).items()),
            GoldenTolerance.from_dict(data["tolerance"]),
            str(data.get("candidate", "")),
        )


@dataclass(frozen=True)
class Manifest:
    """manifest.json, typed."""

    kind: str  # bundle | ort | triton
    model: str  # the model's path in the package: a .onnx, a .ort, or a deployment folder
    model_format: str  # onnx | ort | deployment
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    session: SessionConfig  # the session the golden outputs were made with, and the target opens
    golden: tuple[GoldenCase, ...]
    files: tuple[tuple[str, str], ...]  # (path relative to the package, sha256) of every file but the manifest
    labels: tuple[str, ...] | None = None
    preprocessing: Mapping[str, Any] | None = None
    precision: str = "f32"  # what the model computes in: f32, f16 or int8
    source: Mapping[str, Any] = field(default_factory=dict)  # what was packaged: path, sha256, candidate
    machine: Mapping[str, Any] = field(default_factory=dict)  # where it was packaged
    ort: Mapping[str, Any] = field(default_factory=dict)  # ORT format: style, level, operators
    triton: Mapping[str, Any] = field(default_factory=dict)  # Triton: model name, config path, batching
    notes: tuple[str, ...] = ()
    created: str = ""
    edgenn_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": PACKAGE_FORMAT,
            "version": PACKAGE_VERSION,
            "edgenn_version": self.edgenn_version,
            "created": self.created,
            "kind": self.kind,
            "model": self.model,
            "model_format": self.model_format,
            "precision": self.precision,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "labels": None if self.labels is None else list(self.labels),
            "preprocessing": None if self.preprocessing is None else dict(self.preprocessing),
            "session": self.session.to_dict(),
            "golden": [c.to_dict() for c in self.golden],
            "source": dict(self.source),
            "machine": dict(self.machine),
            "ort": dict(self.ort),
            "triton": dict(self.triton),
            "notes": list(self.notes),
            "files": dict(self.files),
            DIGEST_KEY: _ZERO_DIGEST,
        }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        labels = data.get("labels")
        return cls(
            kind=str(data["kind"]),
            model=str(data["model"]),
            model_format=str(data["model_format"]),
            inputs=tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(s) for s in data["outputs"]),
            session=SessionConfig.from_dict(data["session"]),
            golden=tuple(GoldenCase.from_dict(c) for c in data["golden"]),
            files=tuple((str(k), str(v)) for k, v in dict(data["files"]).items()),
            labels=None if labels is None else tuple(str(x) for x in labels),
            preprocessing=data.get("preprocessing"),
            precision=str(data.get("precision", "f32")),
            source=dict(data.get("source", {})),
            machine=dict(data.get("machine", {})),
            ort=dict(data.get("ort", {})),
            triton=dict(data.get("triton", {})),
            notes=tuple(str(n) for n in data.get("notes", ())),
            created=str(data.get("created", "")),
            edgenn_version=str(data.get("edgenn_version", "")),
        )

    def to_json(self) -> str:
        """manifest.json's text, sealed with the digest of itself."""
        return seal(json.dumps(self.to_dict(), indent=2) + "\n")


def seal(text: str) -> str:
    """`text` (a manifest whose digest reads 64 zeros) with its digest written in."""
    field_text = f'"{DIGEST_KEY}": "{_ZERO_DIGEST}"'
    if text.count(field_text) != 1:
        raise ValueError(f"a manifest to seal holds {field_text} once")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text.replace(field_text, f'"{DIGEST_KEY}": "{digest}"')


def _sealed_digest(text: str, digest: Any) -> bool:
    """Whether `text` is sealed with `digest`: its sha256, taken with the digest written as zeros, is it."""
    if not isinstance(digest, str) or len(digest) != 64:
        return False
    field_text = f'"{DIGEST_KEY}": "{digest}"'
    if text.count(field_text) != 1:
        return False
    body = text.replace(field_text, f'"{DIGEST_KEY}": "{_ZERO_DIGEST}"')
    return hashlib.sha256(body.encode("utf-8")).hexdigest() == digest


# ------------------------------------------------------------------------------------- reading
def read_manifest(folder: str | os.PathLike[str]) -> Manifest:
    """The manifest of the package at `folder`; ModelFileError with one line where it is not one we can read."""
    folder = Path(folder)
    record = folder / MANIFEST_FILE
    if not folder.exists():
        raise ModelFileError(f"package {str(folder)!r} not found; make one with edgenn package MODEL -o FOLDER")
    if not folder.is_dir():
        raise ModelFileError(f"{str(folder)!r} is a file, not a package folder; give the folder edgenn package wrote")
    if not record.is_file():
        raise ModelFileError(
            f"{str(folder)!r} has no {MANIFEST_FILE}: not a package made by edgenn package (make one with "
            "edgenn package MODEL -o FOLDER)"
        )
    try:
        text = record.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(
            f"{record} is unreadable or damaged ({type(exc).__name__}); package the model again"
        ) from None
    if not isinstance(data, dict) or data.get("format") != PACKAGE_FORMAT:
        raise ModelFileError(f"{record} is not an edgenn package manifest; package the model again")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{record} has no valid format version ({version!r}); package the model again")
    if version > PACKAGE_VERSION:
        raise ModelFileError(
            f"{record} is package format version {version}, from a newer edgenn (this one reads up to "
            f"{PACKAGE_VERSION}); upgrade edgenn to verify it"
        )
    if not _sealed_digest(text, data.get(DIGEST_KEY)):
        raise ModelFileError(f"{record} was changed after packaging (its own sha256 does not match); package again")
    try:
        manifest = Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{record} is malformed ({type(exc).__name__}: {exc}); package the model again") from None
    except ModelFileError as exc:
        raise ModelFileError(f"{record}: {exc}") from None
    if manifest.kind not in KINDS:
        raise ModelFileError(f"{record}: unknown package kind {manifest.kind!r} (this edgenn knows {', '.join(KINDS)})")
    listed = dict(manifest.files)
    for name in listed:
        safe_path(folder, name)
    needed = [f"{manifest.model}/deploy.json" if manifest.model_format == "deployment" else manifest.model]
    needed += [str(manifest.triton["config"])] if manifest.triton.get("config") else []
    needed += [name for case in manifest.golden for _, name in case.inputs + case.outputs]
    for name in needed:
        if name not in listed:
            raise ModelFileError(f"{record}: {name!r} is not among the files it lists; package the model again")
    return manifest


def safe_path(folder: Path, name: str) -> Path:
    """`folder / name` for a relative path that stays inside `folder`, links resolved (a manifest never
    points outside its package)."""
    pure = PurePosixPath(name)
    bad = pure.is_absolute() or not pure.parts or any(p in ("..", "", ".") for p in pure.parts) or "\\" in name
    path = folder.joinpath(*pure.parts)
    if bad or not path.resolve().is_relative_to(folder.resolve()):
        raise ModelFileError(f"{folder / MANIFEST_FILE} lists {name!r}, which is not a path inside the package")
    return path


def file_problems(folder: str | os.PathLike[str], manifest: Manifest) -> list[tuple[str, str]]:
    """(file, what is wrong) for every listed file missing or changed, and every file the manifest does not list."""
    folder = Path(folder)
    problems = []
    listed = dict(manifest.files)
    for name, expected in manifest.files:
        path = safe_path(folder, name)
        if path.is_symlink():
            problems.append((name, "a link, not the packaged file"))
        elif not path.is_file():
            problems.append((name, "missing"))
        elif file_sha256(path) != expected:
            problems.append((name, "changed since packaging (sha256 differs)"))
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if (path.is_file() or path.is_symlink()) and relative != MANIFEST_FILE and relative not in listed:
            problems.append((relative, "not in the manifest (added after packaging)"))
    return problems


def load_array(folder: Path, name: str) -> np.ndarray:
    path = safe_path(folder, name)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ModelFileError(f"{path} is not a readable .npy array ({exc}); package the model again") from None


def listed_files(folder: Path, exclude: Sequence[str] = (MANIFEST_FILE,)) -> tuple[tuple[str, str], ...]:
    """(relative path, sha256) of every file under `folder`, sorted: what a manifest lists."""
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative not in exclude:
            out.append((relative, file_sha256(path)))
    return tuple(out)
