"""`Model`: one onnxruntime session, its specs and edgenn's metadata, and checked calls into it.

The session is created once and shared: `InferenceSession.run` is safe to call from many threads,
and everything else a Model holds is read-only after __init__, so one Model serves a whole app.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgenn.errors import InputError, ModelFileError, ProviderError
from edgenn.runtime.deploy import Deployment, ResolvedRoute, is_deployment, load_deployment, range_text, resolve
from edgenn.runtime.image import DEFAULT_MAX_PIXELS, array_to_pixels, picture_to_input, read_picture
from edgenn.runtime.inputs import InputCheck, check_feeds
from edgenn.runtime.metadata import read_metadata
from edgenn.runtime.session import SessionConfig, SessionInfo, clean_ort_message, open_session

# A float score row counts as a probability distribution (no softmax applied) within this slack.
_DISTRIBUTION_SLACK = 1e-3

# Model's default max_batch: larger batches run in chunks of this many samples. At 256 the zoo runs
# within 1% of its best batch throughput and a 100,000-sample batch peaks under 1 GB; one call for the
# whole batch took 8.7 GB and kept it (tools/memory_bench.py; the README has the figures).
DEFAULT_MAX_BATCH = 256


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

    `providers` is "auto" (TensorRT, CUDA, OpenVINO, then the CPU: the first present), a short
    name (cpu, openvino, cuda, tensorrt), ``PROVIDER:DEVICE`` (openvino:GPU), or a list of
    onnxruntime provider names (the first is the one asked for). One that cannot run here is an
    error unless `fallback` is true: the CPU provider then takes over, and `session_info.note`
    says why. `precision` is what the provider computes in (f32, or bf16 / f16 where the device
    has them; None: the one `providers` names, else f32), `threads` caps its intra-op threads
    (None: its default). A full `SessionConfig`
    (`config=`) replaces all of those. With `check_finite`, NaN or Inf in a float input is
    rejected before it reaches the model.

    Memory: a batch larger than `max_batch` samples is run in chunks of that size, one session call
    each, and the outputs joined (the same values as one call, bitwise, except for dynamic int8 whose
    scales are computed over the whole call), so that a 100,000-sample batch does not make onnxruntime
    allocate every intermediate at once; None runs any batch whole. `memory="lean"` turns the CPU
    arena off (memory goes back after each call; slower, see the README).

    The file is checked before it is loaded (`edgenn.runtime.integrity`): a damaged file, or one whose
    weights or quantization scales cannot give right answers, is a ModelFileError; a doubtful one a
    ModelWarning. `metadata="ignore"` runs it as a plain ONNX model: none of edgenn's metadata is read
    (labels, preprocessing, declared shapes, the digest).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | bytes,
        providers: str | Sequence[str] = "auto",
        threads: int | None = None,
        check_finite: bool = False,
        fallback: bool = False,
        precision: str | None = None,
        config: SessionConfig | None = None,
        strict: bool = False,
        max_batch: int | None = DEFAULT_MAX_BATCH,
        memory: str | None = None,
        metadata: str = "strict",
    ) -> None:
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise InputError(f"max_batch must be a positive whole number or None, got {max_batch!r}")
        self.max_batch = max_batch
        self.deployment: Deployment | None = None
        self.routes: tuple[ResolvedRoute, ...] = ()
        self.deployment_notes: tuple[str, ...] = ()
        self._dispatch: tuple[tuple[int, int | None, Model], ...] | None = None
        if is_deployment(path):
            chosen = config is not None or precision is not None or fallback or providers != "auto"
            if chosen or metadata != "strict":
                raise InputError(
                    f"{str(path)!r} is a deployment folder (edgenn tune's output): it sets its own providers, "
                    "precisions and sessions; pass only threads, check_finite, strict, max_batch and memory, or "
                    "give a .onnx file"
                )
            self._open_deployment(path, threads, check_finite, strict, memory)
            return
        if config is None:
            config = session_config(providers, threads=threads, precision=precision, fallback=fallback)
        if memory is not None:
            config = replace(config, memory=memory)
        self._open(path, config.checked(), check_finite, metadata)

    def _open(
        self, path: str | os.PathLike[str] | bytes, config: SessionConfig, check_finite: bool, metadata: str
    ) -> None:
        self.path = "<bytes>" if isinstance(path, (bytes, bytearray)) else str(path)
        self.config = config
        self._runner = open_session(path, self.config, name=self.path, metadata=metadata)
        self._session = self._runner.session
        # onnxruntime's Python wrapper checks the feed's names again on every call (2-5 us of a
        # 30-70 us LeNet-5 call, measured); predict() has checked names, ranks, sizes and dtypes
        # already, so it calls the session's own run where the wrapper exposes it.
        self._run = getattr(self._session, "_sess", self._session).run
        self.session_info: SessionInfo = self._runner.info
        self.providers: tuple[str, ...] = self.session_info.providers
        self.check_finite = check_finite
        self.metadata: dict[str, str] = self._runner.metadata
        first = self._runner.session.get_outputs()[0].shape if self._runner.session.get_outputs() else []
        classes = first[-1] if len(first) == 2 and isinstance(first[-1], int) else None
        stored = read_metadata(self.metadata, self.path, classes)  # every key checked once, here
        self.inputs = self._runner.inputs
        self.outputs = self._runner.outputs
        self.preprocessing = stored.preprocessing
        self._stored_labels = stored.labels
        # Precomputed for the hot path: predict() only looks things up.
        self._checks = tuple(InputCheck.of(s) for s in self.inputs)
        self._input_names = tuple(s.name for s in self.inputs)
        self._output_names = [s.name for s in self.outputs]
        self._single = self._checks[0] if len(self._checks) == 1 else None
        self._only_output = self._output_names[0] if len(self._output_names) == 1 else None
        self._chunkable = _batched_first(self.inputs, self.outputs)

    def _open_deployment(
        self, folder: str | os.PathLike[str], threads: int | None, check_finite: bool, strict: bool, memory: str | None
    ) -> None:
        """Open the session tune chose for each batch range (one per distinct file and configuration)."""
        deployment = load_deployment(folder)
        routes, notes = resolve(deployment, folder, threads=threads, strict=strict)
        if memory is not None:
            routes = tuple(replace(r, config=replace(r.config, memory=memory).checked()) for r in routes)
        if notes:
            # once per Model, at load: the app keeps running on the best candidate this machine can run
            warnings.warn(f"{folder}: {'; '.join(notes)}", RuntimeWarning, stacklevel=3)
        first = routes[0]
        self._open(first.path, first.config, check_finite, "strict")
        members: dict[tuple[str, SessionConfig], Model] = {(str(first.path), first.config): self}
        for route in routes[1:]:
            key = (str(route.path), route.config)
            if key not in members:
                members[key] = Model(route.path, config=route.config, check_finite=check_finite, max_batch=None)
            member = members[key]
            if (member.inputs, member.outputs) != (self.inputs, self.outputs):
                raise ModelFileError(
                    f"{folder}: {route.path.name} has other inputs or outputs than {first.path.name}; "
                    "the files of one deployment must be one model: re-run edgenn tune"
                )
        self.path = str(folder)
        self.deployment, self.routes, self.deployment_notes = deployment, routes, notes
        if len(members) > 1:
            self._dispatch = tuple((r.batch_min, r.batch_max, members[(str(r.path), r.config)]) for r in routes)

    # ------------------------------------------------------------------------------ deployments
    def route_for(self, batch: int) -> ResolvedRoute | None:
        """The batch range of a deployment folder that `batch` falls in (None for a plain .onnx file)."""
        return next((r for r in self.routes if r.covers(batch)), None)

    def member_for(self, batch: int) -> Model:
        """The Model whose session runs a batch of `batch` samples (itself, except in a deployment)."""
        if self._dispatch is None:
            return self
        for low, high, member in self._dispatch:
            if batch >= low and (high is None or batch <= high):
                return member
        return self

    def _member_for_inputs(self, inputs: Any) -> Model:
        first = inputs if type(inputs) is np.ndarray else None
        if first is None and isinstance(inputs, Mapping):
            first = next((v for v in inputs.values() if isinstance(v, np.ndarray)), None)
        if first is None or first.ndim == 0:
            return self  # not a batch that can be told apart: the checks of the first route say what is wrong
        return self.member_for(int(first.shape[0]))

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
            "session": self.session_info.to_dict(),
            **({"deployment": self._deployment_dict()} if self.deployment is not None else {}),
        }

    def _deployment_dict(self) -> dict[str, Any]:
        return {
            "measured_on": self.deployment.machine.cpu_model if self.deployment else None,
            "routes": [
                {
                    "batch": range_text(r),
                    "candidate": r.candidate.id,
                    "file": r.path.name,
                    "session": r.config.to_dict(),
                    "recorded_choice": r.recorded_choice,
                }
                for r in self.routes
            ],
            "notes": list(self.deployment_notes),
        }

    def __repr__(self) -> str:
        return (
            f"Model({self.path!r}, inputs=[{', '.join(map(str, self.inputs))}], "
            f"outputs=[{', '.join(map(str, self.outputs))}], providers={list(self.providers)})"
        )

    # ---------------------------------------------------------------------------------- running
    def predict(self, inputs: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run a batch: an array (single-input models) or {name: array}; returns {output name: array}.

        A batch larger than `max_batch` runs in chunks, on the session the whole batch would run on."""
        if self.max_batch is not None and self._chunkable:
            size = _batch_size(inputs)
            if size is not None and size > self.max_batch:
                return self._predict_chunked(inputs, size)
        return self._predict_whole(inputs)

    def _predict_chunked(self, inputs: np.ndarray | Mapping[str, Any], size: int) -> dict[str, np.ndarray]:
        member = self.member_for(size)  # a deployment's route for the whole batch, as one call would take
        step = self.max_batch or size
        parts = [member._run_here(_rows(inputs, start, start + step)) for start in range(0, size, step)]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _predict_whole(self, inputs: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        member = self._member_for_inputs(inputs) if self._dispatch is not None else self
        return member._run_here(inputs)

    def _run_here(self, inputs: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """This Model's own session on `inputs`, checked first (no dispatch, no chunking)."""
        single = self._single
        if single is not None and type(inputs) is np.ndarray:
            feeds = {single.spec.name: single.prepare(inputs, self.check_finite)}
        else:
            feeds = check_feeds(inputs, self._checks, self._input_names, self.check_finite)
        try:
            results = self._run(self._output_names, feeds, None)
        except Exception as exc:  # shapes that pass the declared specs can still clash inside the graph
            first = clean_ort_message(str(exc))
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

    def classify_picture(
        self, picture: Any, top_k: int = 5, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> tuple[ClassScore, ...]:
        """Classify a picture (path, bytes, Pillow image or array), converted as the model was trained;
        a picture file of more than `max_pixels` pixels is refused before it is decoded."""
        return self.classify(self.picture_input(picture, max_pixels), top_k)[0]

    def picture_input(self, picture: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """A picture -> a batch of one model input, using the preprocessing stored in the model."""
        if self.preprocessing is None:
            raise InputError(
                f"{self.path} has no edgenn preprocessing metadata, so how a picture becomes its input is "
                f"unknown; pass the model input as an array (.npy) instead"
            )
        if self._single is None:
            raise InputError(f"{self.path} has {len(self.inputs)} inputs; a picture can feed only a one-input model")
        color = "grey" if self.preprocessing.is_digits else self.preprocessing.color
        if isinstance(picture, np.ndarray):
            pixels = array_to_pixels(picture, color)
        else:
            pixels = read_picture(picture, color=color, max_pixels=max_pixels)
        return picture_to_input(pixels, self.preprocessing)

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
        array = value if type(value) is np.ndarray else check.as_array(value)
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


# The first-dim names taken for a batch: edgenn's exporter writes "batch"; others write these. A model
# whose inputs and outputs do not all start with one of them (a time-major RNN's "seq", NMS's selected
# boxes, unnamed dims) is never chunked: splitting along another axis would change its answer.
BATCH_DIM_NAMES = frozenset({"batch", "batch_size", "N", "n", "B", "b"})


def _batched_first(inputs: Sequence[Any], outputs: Sequence[Any]) -> bool:
    """Every input and output starts with the same batch dim: chunks of a batch can be joined."""
    firsts = {s.shape[0] if s.shape else None for s in (*inputs, *outputs)}
    return len(firsts) == 1 and next(iter(firsts)) in BATCH_DIM_NAMES


def _batch_size(inputs: Any) -> int | None:
    """The first dim shared by every input array (None where there is none, or they disagree: the
    checks of one whole call then say what is wrong)."""
    if type(inputs) is np.ndarray:
        return int(inputs.shape[0]) if inputs.ndim else None
    if not isinstance(inputs, Mapping) or not inputs:
        return None
    sizes = {v.shape[0] if isinstance(v, np.ndarray) and v.ndim else None for v in inputs.values()}
    return sizes.pop() if len(sizes) == 1 else None


def _rows(inputs: np.ndarray | Mapping[str, Any], start: int, stop: int) -> Any:
    if type(inputs) is np.ndarray:
        return inputs[start:stop]
    return {name: value[start:stop] for name, value in inputs.items()}


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


def session_config(
    providers: str | Sequence[str], threads: int | None = None, precision: str | None = None, fallback: bool = False
) -> SessionConfig:
    """A SessionConfig from Model's arguments: ``"openvino:GPU"``, ``"cuda"``, a list of ORT names, ..."""
    if not isinstance(providers, str):
        names = [str(p) for p in providers]
        if not names:
            raise ProviderError("no provider given: use auto, cpu, openvino, cuda or tensorrt")
        providers = names[0]
    return SessionConfig.parse(providers, threads=threads, precision=precision, fallback=fallback)
