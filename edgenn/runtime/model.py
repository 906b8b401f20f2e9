"""`Model`: one onnxruntime session, its specs and edgenn's metadata, and checked calls into it.

The session is created once and shared: `InferenceSession.run` is safe to call from many threads,
and everything else a Model holds is read-only after __init__, so one Model serves a whole app.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.errors import EdgennError, InputError, ModelFileError, ProviderError
from edgenn.runtime.image import array_to_grey, picture_to_input, read_picture
from edgenn.runtime.inputs import ORT_TYPES, InputCheck, check_feeds
from edgenn.runtime.providers import resolve_providers
from edgenn.specs import META_INPUTS, META_LABELS, META_OUTPUTS, META_PREPROCESSING, Preprocessing, TensorSpec

# A float score row counts as a probability distribution (no softmax applied) within this slack.
_DISTRIBUTION_SLACK = 1e-3


@dataclass(frozen=True)
class ClassScore:
    """One class of a classification: its label, its index in the output, its probability."""

    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "score": self.score}


class Model:
    """An ONNX model ready to run: checked inputs in, named numpy outputs out.

    `providers` is "auto" (TensorRT, CUDA, then CPU, whichever is installed), "cpu", "cuda",
    "tensorrt" or a list of onnxruntime provider names; one that is not available is an error
    unless `fallback` is true. `threads` caps onnxruntime's intra-op threads (None: its default).
    With `check_finite`, NaN or Inf in a float input is rejected before it reaches the model.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | bytes,
        providers: str | Sequence[str] = "auto",
        threads: int | None = None,
        check_finite: bool = False,
        fallback: bool = False,
    ) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise EdgennError(f"threads must be a positive whole number or None, got {threads!r}")
        self.path = "<bytes>" if isinstance(path, (bytes, bytearray)) else str(path)
        source = bytes(path) if isinstance(path, (bytes, bytearray)) else _checked_file(self.path)
        wanted = resolve_providers(providers, fallback=fallback)
        self._session = _open_session(self.path, source, wanted, threads)
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        automatic = isinstance(providers, str) and providers.strip().lower() == "auto"
        if not automatic and not fallback and wanted[0] not in self.providers:
            # ORT lists GPU providers whose libraries are missing, then quietly runs on the CPU.
            raise ProviderError(
                f"onnxruntime could not start {wanted[0]} (its libraries may be missing) and would run "
                f"on {', '.join(self.providers)}; fix the install, choose --provider cpu, or allow a "
                f"fall-back"
            )
        self.check_finite = check_finite
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        declared = _json_meta(self.metadata, META_INPUTS, self.path) or []
        self.inputs = tuple(_spec_of(a, declared, self.path) for a in self._session.get_inputs())
        declared = _json_meta(self.metadata, META_OUTPUTS, self.path) or []
        self.outputs = tuple(_spec_of(a, declared, self.path) for a in self._session.get_outputs())
        self.preprocessing = _preprocessing_of(self.metadata, self.path)
        self._stored_labels = _labels_of(self.metadata, self.path)
        # Precomputed for the hot path: predict() only looks things up.
        self._checks = tuple(InputCheck.of(s) for s in self.inputs)
        self._input_names = tuple(s.name for s in self.inputs)
        self._output_names = [s.name for s in self.outputs]
        self._single = self._checks[0] if len(self._checks) == 1 else None
        self._only_output = self._output_names[0] if len(self._output_names) == 1 else None

    # ------------------------------------------------------------------------------ description
    @property
    def session(self) -> Any:
        """The onnxruntime InferenceSession, for what this wrapper does not offer."""
        return self._session

    @property
    def labels(self) -> tuple[str, ...]:
        """Class labels from the metadata, or "0".."N-1" for a model without (empty when N is dynamic)."""
        if self._stored_labels is not None:
            return self._stored_labels
        classes = self.outputs[0].shape[-1] if self.outputs and self.outputs[0].shape else None
        return tuple(str(i) for i in range(classes)) if isinstance(classes, int) else ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
            "providers": list(self.providers),
        }

    def __repr__(self) -> str:
        return (
            f"Model({self.path!r}, inputs=[{', '.join(map(str, self.inputs))}], "
            f"outputs=[{', '.join(map(str, self.outputs))}], providers={list(self.providers)})"
        )

    # ---------------------------------------------------------------------------------- running
    def predict(self, inputs: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run a batch: an array (single-input models) or {name: array}; returns {output name: array}."""
        single = self._single
        if single is not None and type(inputs) is np.ndarray:
            feeds = {single.spec.name: single.prepare(inputs, self.check_finite)}
        else:
            feeds = check_feeds(inputs, self._checks, self._input_names, self.check_finite)
        try:
            results = self._session.run(self._output_names, feeds)
        except Exception as exc:  # shapes that pass the declared specs can still clash inside the graph
            first = _clean_ort_message(str(exc))
            raise InputError(f"onnxruntime could not run {self.path} on these inputs: {first}") from None
        if self._only_output is not None:
            return {self._only_output: results[0]}
        return dict(zip(self._output_names, results, strict=True))

    def predict_one(self, sample: Any) -> dict[str, np.ndarray]:
        """Run one sample given without its batch dimension; the outputs come back without it too."""
        outputs = self.predict(self._sample_batch(sample))
        return {name: out[0] if out.ndim and out.shape[0] == 1 else out for name, out in outputs.items()}

    def classify(self, inputs: Any, top_k: int = 5, output: str | None = None) -> list[tuple[ClassScore, ...]]:
        """The `top_k` classes of each sample in a batch, best first, scores as probabilities."""
        return self.top_classes(self._scores(self.predict(inputs), output), top_k)

    def classify_one(self, sample: Any, top_k: int = 5, output: str | None = None) -> tuple[ClassScore, ...]:
        """The `top_k` classes of one sample given without its batch dimension."""
        return self.classify(self._sample_batch(sample), top_k, output)[0]

    def classify_picture(self, picture: Any, top_k: int = 5) -> tuple[ClassScore, ...]:
        """Classify a picture (path, bytes, Pillow image or array), converted as the model was trained."""
        return self.classify(self.picture_input(picture), top_k)[0]

    def picture_input(self, picture: Any) -> np.ndarray:
        """A picture -> a batch of one model input, using the preprocessing stored in the model."""
        if self.preprocessing is None:
            raise InputError(
                f"{self.path} has no edgenn preprocessing metadata, so how a picture becomes its input is "
                f"unknown; pass the model input as an array (.npy) instead"
            )
        if self._single is None:
            raise InputError(f"{self.path} has {len(self.inputs)} inputs; a picture can feed only a one-input model")
        if isinstance(picture, np.ndarray):
            grey = array_to_grey(picture)
        else:
            grey = read_picture(picture)
        return picture_to_input(grey, self.preprocessing)

    def top_classes(self, scores: np.ndarray, top_k: int = 5) -> list[tuple[ClassScore, ...]]:
        """(batch, classes) scores -> the `top_k` labelled classes per row, probabilities best first."""
        if not isinstance(top_k, int) or top_k < 1:
            raise InputError(f"top_k must be a positive whole number, got {top_k!r}")
        probabilities = to_probabilities(scores)
        labels = self._labels_for(probabilities.shape[1])
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        return [
            tuple(ClassScore(labels[i], int(i), float(row[i])) for i in picks)
            for row, picks in zip(probabilities, order, strict=True)
        ]

    # ---------------------------------------------------------------------------------- helpers
    def _sample_batch(self, sample: Any) -> np.ndarray | dict[str, np.ndarray]:
        """One sample (an array, or {name: array}) with the batch dimension of 1 added."""
        if isinstance(sample, Mapping):
            return {name: self._with_batch(self._check_named(name), value) for name, value in sample.items()}
        if self._single is None:
            raise InputError(
                f"the model has {len(self.inputs)} inputs ({', '.join(map(repr, self._input_names))}): "
                f"pass a dict {{name: array}}"
            )
        return self._with_batch(self._single, sample)

    def _check_named(self, name: str) -> InputCheck:
        for check in self._checks:
            if check.spec.name == name:
                return check
        raise InputError(f"unknown input {name!r}: the model's inputs are {', '.join(map(repr, self._input_names))}")

    def _with_batch(self, check: InputCheck, value: Any) -> np.ndarray:
        array = np.asarray(value)
        spec = check.spec
        if not check.batched:
            raise InputError(f"input {spec.name!r} has no batch dimension (shape {spec.shape}); use predict()")
        if array.ndim != check.rank - 1:
            sample = "(" + ", ".join(map(str, spec.shape[1:])) + ")"
            hint = "; it already has the batch dimension: use predict()" if array.ndim == check.rank else ""
            raise InputError(
                f"input {spec.name!r}: predict_one expects one sample shaped {sample}, got shape {array.shape}{hint}"
            )
        return array[None]

    def _scores(self, outputs: dict[str, np.ndarray], output: str | None) -> np.ndarray:
        name = output or self._output_names[0]
        if name not in outputs:
            raise InputError(f"unknown output {name!r}: the model's outputs are {', '.join(map(repr, outputs))}")
        scores = outputs[name]
        if scores.ndim != 2 or scores.dtype.kind != "f" or scores.shape[1] < 2:
            raise InputError(
                f"output {name!r} is {scores.dtype} shaped {scores.shape}; classifying needs float scores "
                f"shaped (batch, classes) with 2 classes or more: use predict() for this model"
            )
        if scores.shape[0] == 0:
            raise InputError("the batch is empty: there is nothing to classify")
        return scores

    def _labels_for(self, classes: int) -> tuple[str, ...]:
        if self._stored_labels is None:
            return tuple(str(i) for i in range(classes))
        if len(self._stored_labels) != classes:
            raise ModelFileError(
                f"{self.path}: its metadata lists {len(self._stored_labels)} labels but the output has "
                f"{classes} classes; re-export the model"
            )
        return self._stored_labels


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows that already are distributions stay as they are; logits go through a softmax."""
    values = np.asarray(scores, dtype=np.float64)
    if _are_distributions(values):
        return np.clip(values, 0.0, 1.0)
    shifted = values - values.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _are_distributions(values: np.ndarray) -> bool:
    if values.size == 0 or not np.isfinite(values).all():
        return False
    inside = values.min() >= -_DISTRIBUTION_SLACK and values.max() <= 1.0 + _DISTRIBUTION_SLACK
    return bool(inside and np.all(np.abs(values.sum(axis=1) - 1.0) <= _DISTRIBUTION_SLACK))


# ------------------------------------------------------------------------------------- loading
def _open_session(path: str, source: str | bytes, providers: list[str], threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT's warnings are for its developers, not for app users
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises a dozen unrelated types for bad files
        raise ModelFileError(_load_failure(path, source, exc, ort.__version__)) from None


def _checked_file(path: str) -> str:
    file = Path(path)
    if not file.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not file.is_file():
        raise ModelFileError(f"{path} is not a file; give the path of a .onnx model")
    if file.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty, not an ONNX model")
    return path


def _load_failure(path: str, source: str | bytes, exc: BaseException, ort_version: str) -> str:
    """One line saying why onnxruntime refused the file: not ONNX, truncated, or unsupported."""
    text = str(exc)
    if "INVALID_PROTOBUF" in text or "Protobuf parsing failed" in text:
        head = source[:1] if isinstance(source, bytes) else _first_byte(path)
        # Every ONNX file starts with field 1 (ir_version, a varint): tag byte 0x08.
        if head == b"\x08":
            return f"{path} is a truncated or corrupt ONNX file (protobuf parsing failed); export it again"
        return f"{path} is not an ONNX model (protobuf parsing failed); give a .onnx file"
    return f"onnxruntime {ort_version} cannot load {path}: {_clean_ort_message(text)}"


def _first_byte(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(1)
    except OSError:
        return b""


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (?:Load model from .*? failed:)?")
_CPP_LOCATION = re.compile(r"\S+\.(?:h|cc|cpp|hpp):\d+ [^()]*\((?:[^()]|\([^()]*\))*\)\s*")


def _clean_ort_message(text: str, limit: int = 420) -> str:
    """ORT's error without its error-code prefix and C++ source locations, on one short line."""
    message = _ORT_PREFIX.sub("", " ".join(text.split()))
    message = _CPP_LOCATION.sub("", message).strip() or "unknown error"
    if len(message) > limit:
        cut = message.rfind(". ", 0, limit)
        message = message[: cut + 1] if cut > 0 else message[:limit] + "..."
    return message


def _json_meta(metadata: Mapping[str, str], key: str, path: str) -> Any:
    if key not in metadata:
        return None
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError:
        raise ModelFileError(f"{path}: metadata {key} is not valid JSON; re-export the model") from None


def _labels_of(metadata: Mapping[str, str], path: str) -> tuple[str, ...] | None:
    labels = _json_meta(metadata, META_LABELS, path)
    if labels is None:
        return None
    if not isinstance(labels, list) or not labels:
        raise ModelFileError(f"{path}: metadata {META_LABELS} must be a non-empty JSON list; re-export the model")
    return tuple(str(label) for label in labels)


def _preprocessing_of(metadata: Mapping[str, str], path: str) -> Preprocessing | None:
    data = _json_meta(metadata, META_PREPROCESSING, path)
    if data is None:
        return None
    try:
        return Preprocessing.from_dict(data)
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{path}: metadata {META_PREPROCESSING} is malformed; re-export the model") from None


def _spec_of(arg: Any, declared: Sequence[Mapping[str, Any]], path: str) -> TensorSpec:
    """onnxruntime's view of an input or output as a TensorSpec; unnamed dynamic dims get names."""
    dtype = ORT_TYPES.get(arg.type)
    if dtype is None:
        raise ModelFileError(
            f"{path}: {arg.name!r} has type {arg.type}, which edgenn.runtime does not handle "
            f"(supported: {', '.join(sorted(set(ORT_TYPES.values())))}); use onnxruntime directly"
        )
    names = next((d.get("shape", []) for d in declared if isinstance(d, Mapping) and d.get("name") == arg.name), [])
    shape = []
    for i, dim in enumerate(arg.shape or ()):
        if isinstance(dim, int) and dim >= 0:
            shape.append(dim)
        elif isinstance(dim, str) and dim:
            shape.append(dim)
        elif i < len(names) and isinstance(names[i], str):
            shape.append(names[i])
        else:
            shape.append(f"dim{i}")
    return TensorSpec(arg.name, tuple(shape), dtype)
