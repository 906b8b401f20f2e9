"""The model card: what `edgenn build` measured for a zoo model, typed, and read back from card.json.

    card = Card.load("models/lenet5/card.json")
    card.quantized.accuracy, card.latency.row("fp32", 64).median_ms, card.tuned.point(1, 64).choice

build writes it, report renders it as the model folder's README, tools/reference_table.py turns the
cards into the README's reference table: all three through this one type, so a field renamed or
missing is one error here ("card.json is malformed: ...") rather than a KeyError in each reader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenn.errors import ModelFileError


@dataclass(frozen=True)
class LatencyRow:
    variant: str  # fp32 | quantized | eager
    batch: int
    threads: int
    median_ms: float
    p90_ms: float
    throughput_per_s: float
    speedup_vs_eager: float | None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatencyRow:
        return cls(
            str(d["variant"]),
            int(d["batch"]),
            int(d["threads"]),
            float(d["median_ms"]),
            float(d["p90_ms"]),
            float(d["throughput_per_s"]),
            None if d.get("speedup_vs_eager") is None else float(d["speedup_vs_eager"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Latency:
    rows: tuple[LatencyRow, ...]
    threads: int
    cpu: str | None

    def row(self, variant: str, batch: int) -> LatencyRow | None:
        return next((r for r in self.rows if (r.variant, r.batch) == (variant, batch)), None)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Latency:
        return cls(tuple(LatencyRow.from_dict(r) for r in d["rows"]), int(d["threads"]), d.get("cpu"))

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "threads": self.threads, "cpu": self.cpu}


@dataclass(frozen=True)
class TunedPoint:
    """One thread count and batch size of the tuned deployment: what runs, and beside what it was timed."""

    threads: int
    batch: int
    choice: str  # the candidate's id: fp32@cpu, static-qdq@openvino, ...
    choice_ms: float | None
    speedup: float | None  # paired, against the plain fp32 file on the CPU provider
    speedup_low: float | None
    speedup_high: float | None
    ort_ms: float | None  # the plain fp32 file on onnxruntime's CPU provider
    openvino_ms: float | None  # the fp32 file on onnxruntime's OpenVINO provider, where it ran
    test_accuracy: float | None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TunedPoint:
        def number(key: str) -> float | None:
            return None if d.get(key) is None else float(d[key])

        return cls(
            int(d["threads"]),
            int(d["batch"]),
            str(d["choice"]),
            number("choice_ms"),
            number("speedup"),
            number("speedup_low"),
            number("speedup_high"),
            number("ort_ms"),
            number("openvino_ms"),
            number("test_accuracy"),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Tuned:
    folder: str  # relative to the model's folder
    cpu: str
    cores: int
    providers: tuple[str, ...]
    points: tuple[TunedPoint, ...]
    notes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    def point(self, threads: int, batch: int) -> TunedPoint | None:
        return next((p for p in self.points if (p.threads, p.batch) == (threads, batch)), None)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tuned:
        return cls(
            str(d["folder"]),
            str(d["cpu"]),
            int(d["cores"]),
            tuple(str(p) for p in d.get("providers", ())),
            tuple(TunedPoint.from_dict(p) for p in d["points"]),
            tuple(str(n) for n in d.get("notes", ())),
            tuple(str(s) for s in d.get("skipped", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "cpu": self.cpu,
            "cores": self.cores,
            "providers": list(self.providers),
            "points": [p.to_dict() for p in self.points],
            "notes": list(self.notes),
            "skipped": list(self.skipped),
        }


@dataclass(frozen=True)
class ParityCase:
    case: str
    max_abs_error: float
    argmax_agreement: float | None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParityCase:
        agreement = d.get("argmax_agreement")
        return cls(str(d["case"]), float(d["max_abs_error"]), None if agreement is None else float(agreement))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ExportFacts:
    file: str
    exporter: str
    opset: int
    nodes: int
    bytes: int
    parity: tuple[ParityCase, ...]
    dynamic_dims: Mapping[str, Any]

    @property
    def worst_max_abs_error(self) -> float:
        return max(p.max_abs_error for p in self.parity)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExportFacts:
        return cls(
            str(d["file"]),
            str(d["exporter"]),
            int(d["opset"]),
            int(d["nodes"]),
            int(d["bytes"]),
            tuple(ParityCase.from_dict(p) for p in d["parity"]),
            dict(d["dynamic_dims"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "parity": [p.to_dict() for p in self.parity], "dynamic_dims": dict(self.dynamic_dims)}


@dataclass(frozen=True)
class QuantizedFacts:
    file: str
    recipe: Mapping[str, Any]  # Recipe.to_dict()
    kept_float: tuple[Mapping[str, Any], ...]
    fp32_accuracy: float
    accuracy: float
    drop_points: float
    argmax_agreement: float
    max_abs_error: float
    bytes: int
    size_ratio: float
    int8_kernels: Mapping[str, Any]
    notes: tuple[str, ...]

    @property
    def recipe_name(self) -> str:
        return str(self.recipe["name"])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantizedFacts:
        return cls(
            str(d["file"]),
            dict(d["recipe"]),
            tuple(dict(k) for k in d["kept_float"]),
            float(d["fp32_accuracy"]),
            float(d["accuracy"]),
            float(d["drop_points"]),
            float(d["argmax_agreement"]),
            float(d["max_abs_error"]),
            int(d["bytes"]),
            float(d["size_ratio"]),
            dict(d["int8_kernels"]),
            tuple(str(n) for n in d.get("notes", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "recipe": dict(self.recipe),
            "kept_float": [dict(k) for k in self.kept_float],
            "int8_kernels": dict(self.int8_kernels),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class TrainingFacts:
    config: Mapping[str, Any]
    test_accuracy: float
    val_accuracy: float
    best_epoch: int
    train_seconds: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingFacts:
        return cls(
            dict(d["config"]),
            float(d["test_accuracy"]),
            float(d["val_accuracy"]),
            int(d["best_epoch"]),
            float(d["train_seconds"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "config": dict(self.config)}


@dataclass(frozen=True)
class Card:
    model: str
    description: str
    edgenn_version: str
    architecture: Mapping[str, Any]  # parameters, layers (name, type, output_shape, parameters)
    inputs: tuple[Mapping[str, Any], ...]
    labels: tuple[str, ...]
    data: Mapping[str, Any]
    training: TrainingFacts
    export: ExportFacts
    quantized: QuantizedFacts
    weights: Mapping[str, Any]
    latency: Latency
    tuned: Tuned | None
    versions: Mapping[str, str]
    rebuild: tuple[str, ...]

    @property
    def parameters(self) -> int:
        return int(self.architecture["parameters"])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Card:
        return cls(
            model=str(d["model"]),
            description=str(d["description"]),
            edgenn_version=str(d.get("edgenn_version", "")),
            architecture=dict(d["architecture"]),
            inputs=tuple(dict(i) for i in d["inputs"]),
            labels=tuple(str(label) for label in d["labels"]),
            data=dict(d["data"]),
            training=TrainingFacts.from_dict(d["training"]),
            export=ExportFacts.from_dict(d["export"]),
            quantized=QuantizedFacts.from_dict(d["quantized"]),
            weights=dict(d["weights"]),
            latency=Latency.from_dict(d["latency"]),
            tuned=Tuned.from_dict(d["tuned"]) if d.get("tuned") else None,
            versions=dict(d.get("versions", {})),
            rebuild=tuple(str(c) for c in d.get("rebuild", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "description": self.description,
            "edgenn_version": self.edgenn_version,
            "architecture": dict(self.architecture),
            "inputs": [dict(i) for i in self.inputs],
            "labels": list(self.labels),
            "data": dict(self.data),
            "training": self.training.to_dict(),
            "export": self.export.to_dict(),
            "quantized": self.quantized.to_dict(),
            "weights": dict(self.weights),
            "latency": self.latency.to_dict(),
            "tuned": self.tuned.to_dict() if self.tuned else None,
            "versions": dict(self.versions),
            "rebuild": list(self.rebuild),
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Card:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{path} is unreadable ({type(exc).__name__}); rebuild with edgenn build") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(
                f"{path} is malformed ({type(exc).__name__}: {exc}); rebuild with edgenn build"
            ) from None
