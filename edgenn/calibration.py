"""Data for quantization: calibration samples and labelled evaluation samples, checked against the graph.

Two sources: the zoo's digits (calibration from the *training* split, evaluation on the test split,
auto mode's choices on the validation split), turned into model inputs with the preprocessing the
exporter wrote into the model's metadata; or a user's `.npz` with one array per model input (named
as the input; a model with one input also takes a file with one array) and, for evaluation, `labels`.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.errors import InputError, ModelFileError, first_line
from edgenn.specs import META_PREPROCESSING, Preprocessing, TensorSpec

LABELS_KEY = "labels"
CALIBRATION_BATCH = 32  # samples per calibration run when the batch dim is dynamic; ranges do not depend on it


@dataclass(frozen=True)
class Samples:
    """Model inputs (one array per input name, samples along axis 0), labels where known, and where they came from."""

    feeds: Mapping[str, np.ndarray]
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    def batch(self, size: int) -> dict[str, np.ndarray]:
        """The first `size` samples (repeated when there are fewer), contiguous, for timing."""
        out = {}
        for name, array in self.feeds.items():
            reps = -(-size // len(array))
            out[name] = np.ascontiguousarray(np.concatenate([array] * reps)[:size] if reps > 1 else array[:size])
        return out

    def chunks(self, size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self), size):
            yield {name: array[start : start + size] for name, array in self.feeds.items()}


def read_preprocessing(model: Any) -> Preprocessing | None:
    """The digits preprocessing edgenn's exporter stored in the model, or None."""
    props = {p.key: p.value for p in model.metadata_props}
    if META_PREPROCESSING not in props:
        return None
    try:
        return Preprocessing.from_dict(json.loads(props[META_PREPROCESSING]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"the model's {META_PREPROCESSING} metadata is unreadable ({exc})") from None


def digits_samples(specs: tuple[TensorSpec, ...], prep: Preprocessing | None, split: str, flag: str) -> Samples:
    """A digits split as inputs of this model; `flag` names the option that would replace it."""
    if prep is None or not prep.is_digits:
        raise InputError(
            f"the model is not one of the zoo's digits models (no digits preprocessing in {META_PREPROCESSING}), "
            f"so edgenn has no data for it; pass {flag} data.npz (one array per input)"
        )
    if len(specs) != 1:
        raise InputError(f"digits feed one input, the model has {len(specs)}; pass {flag} data.npz")
    from edgenn.data import load_digits_split

    part = getattr(load_digits_split(), split)
    samples = Samples({specs[0].name: part.inputs(prep)}, np.asarray(part.labels), f"digits {split} split")
    check_samples(samples, specs, flag)
    return samples


def load_npz(path: str | os.PathLike[str], specs: tuple[TensorSpec, ...], flag: str, labelled: bool | None) -> Samples:
    """A user's .npz as model inputs (and `labels`: required when `labelled`, ignored when False, kept
    where present when None), checked against the graph."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{flag} file {str(path)!r} not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # numpy's own message for object arrays advises allow_pickle, which edgenn never sets (it runs code)
        why = "it holds object arrays, which edgenn does not unpickle" if "pickle" in str(exc) else first_line(exc)
        raise InputError(
            f"{flag} file {str(path)!r} is not a readable .npz ({why}); write plain arrays with numpy.savez"
        ) from None
    labels = arrays.pop(LABELS_KEY, None)
    if labelled and labels is None:
        raise InputError(
            f"{flag} file {str(path)!r} has no {LABELS_KEY!r} array; evaluation needs the true class of each sample"
        )
    feeds = _match_inputs(arrays, specs, path, flag)
    if labels is not None and labelled is not False:
        labels = _check_labels(labels, len(next(iter(feeds.values()))), path, flag)
    samples = Samples(feeds, labels if labelled is not False else None, str(path))
    check_samples(samples, specs, flag)
    return samples


def _match_inputs(
    arrays: dict[str, np.ndarray], specs: tuple[TensorSpec, ...], path: Path, flag: str
) -> dict[str, np.ndarray]:
    names = [s.name for s in specs]
    if len(specs) == 1 and len(arrays) == 1:
        return {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InputError(
            f"{flag} file {str(path)!r} has arrays {sorted(arrays) or 'none'} but the model's inputs are {names}; "
            f"name one array per input (missing: {', '.join(missing)})"
        )
    return {n: arrays[n] for n in names}


def _check_labels(labels: np.ndarray, count: int, path: Path, flag: str) -> np.ndarray:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"{flag} file {str(path)!r}: {LABELS_KEY!r} must be a 1-D integer array of class indices, "
            f"got {labels.dtype} with shape {labels.shape}"
        )
    if len(labels) != count:
        raise InputError(f"{flag} file {str(path)!r}: {len(labels)} labels for {count} samples")
    return labels.astype(np.int64)


def check_samples(samples: Samples, specs: tuple[TensorSpec, ...], flag: str) -> None:
    """Every array has the input's dtype and rank, fixed dims match, and all hold the same number of samples."""
    counts = set()
    for spec in specs:
        array = samples.feeds[spec.name]
        if array.dtype != np.dtype(spec.dtype):
            raise InputError(
                f"{flag} data from {samples.source}: input {spec.name!r} is {array.dtype}, "
                f"the model takes {spec.dtype}; convert it (array.astype(numpy.{spec.dtype}))"
            )
        if array.ndim != len(spec.shape) or any(
            isinstance(want, int) and want != got for want, got in zip(spec.shape[1:], array.shape[1:])
        ):
            raise InputError(
                f"{flag} data from {samples.source}: input {spec.name!r} has shape {tuple(array.shape)}, "
                f"the model takes {'x'.join(str(d) for d in spec.shape)} (samples along the first axis)"
            )
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise InputError(
                f"{flag} data from {samples.source}: input {spec.name!r} holds NaN or Inf; "
                "calibration needs finite values"
            )
        counts.add(len(array))
    if len(counts) > 1:
        raise InputError(
            f"{flag} data from {samples.source}: the input arrays hold different numbers of samples {sorted(counts)}"
        )
    if not counts or 0 in counts:
        raise InputError(f"{flag} data from {samples.source} holds no samples")


def take(samples: Samples, count: int, flag: str, seed: int = 0) -> Samples:
    """`count` samples chosen with a fixed seed (deterministic; no bias from data sorted by class)."""
    if len(samples) < count:
        raise InputError(
            f"{flag} data from {samples.source} has {len(samples)} samples, fewer than the {count} asked for; "
            f"pass --samples {len(samples)} or more data"
        )
    index = np.sort(np.random.default_rng(seed).choice(len(samples), size=count, replace=False))
    feeds = {name: np.ascontiguousarray(array[index]) for name, array in samples.feeds.items()}
    labels = None if samples.labels is None else samples.labels[index]
    return Samples(feeds, labels, f"{samples.source}, {count} samples (seed {seed})")


def _fill(array: np.ndarray, batch: int) -> np.ndarray:
    """`array` repeated along its first axis up to exactly `batch` rows (cycling through its samples)."""
    return array if len(array) == batch else array[np.arange(batch) % len(array)]


def calibration_reader(samples: Samples, batch: int | None) -> Any:
    """An onnxruntime CalibrationDataReader over `samples`, `batch` (or CALIBRATION_BATCH) at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            chunks = list(samples.chunks(batch or CALIBRATION_BATCH))
            if batch:  # a model with a fixed batch takes only full batches: the last is filled up
                chunks = [{k: _fill(v, batch) for k, v in c.items()} for c in chunks]
            self._batches = iter(chunks)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    return _Reader()


RANDOM_SAMPLES = 256


def random_samples(
    specs: tuple[TensorSpec, ...],
    dim_sizes: Mapping[str, int],
    seed: int = 0,
    count: int = RANDOM_SAMPLES,
    flag: str = "--eval-data",
) -> Samples:
    """Seeded random inputs where no data exists: floats ~ N(0, 1), integers in 0..1 (a valid index for any
    embedding), booleans at random. Good for timings and output error, not for accuracy or calibration."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = []
        for i, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                shape.append(dim)
            elif dim in dim_sizes:  # a named dim of known size, even first (a bias of shape (len,))
                shape.append(int(dim_sizes[dim]))
            elif i == 0:
                shape.append(count)
            else:
                example = "x".join(["1"] + [str(d) if isinstance(d, int) else "8" for d in spec.shape[1:]])
                raise InputError(
                    f"input {spec.name!r} has a dynamic dimension {dim!r} and no data says its size: give "
                    f"--input {spec.name}:{example}:{spec.dtype}, or {flag} data.npz"
                )
        feeds[spec.name] = random_array(rng, tuple(shape), spec.dtype)
    return Samples(feeds, None, f"random inputs (seed {seed}, {count} samples)")


def sizes_from_specs(specs: tuple[TensorSpec, ...], given: tuple[TensorSpec, ...]) -> dict[str, int]:
    """The sizes of the model's named dims that `--input NAME:DIMS` specs give, dim by position (ids:1x16
    against the model's ids:batchxlen says len is 16); a one-input model takes a spec of any name."""
    by_name = {s.name: s for s in specs}
    sizes: dict[str, int] = {}
    for spec in given:
        model = by_name.get(spec.name) or (specs[0] if len(specs) == 1 else None)
        if model is None or len(model.shape) != len(spec.shape):
            continue
        for i, (dim, size) in enumerate(zip(model.shape, spec.shape)):
            if isinstance(dim, str) and isinstance(size, int) and i > 0:
                sizes[dim] = size
    return sizes


def model_inputs(
    specs: tuple[TensorSpec, ...],
    preprocessing: Preprocessing | None,
    dim_sizes: Mapping[str, int],
    data: str | os.PathLike[str] | None,
    input_specs: tuple[TensorSpec, ...],
    seed: int,
    count: int,
    flag: str,
) -> Samples:
    """Inputs for a run that needs no labels (compare, package's golden cases): the user's .npz, the digits
    test split for a digits model (unless --input gives other sizes), else seeded random inputs with the
    dims the model stores and `input_specs` give."""
    if data:
        return load_npz(data, specs, flag, labelled=None)
    if preprocessing is not None and preprocessing.is_digits and not input_specs:
        return digits_samples(specs, preprocessing, "test", flag)
    sizes = {**dim_sizes, **sizes_from_specs(specs, input_specs)}
    return random_samples(specs, sizes, seed=seed, count=count, flag=flag)


def dim_sizes_of(metadata: Mapping[str, str]) -> dict[str, int]:
    """The sizes of named dynamic dims the export was validated at, from the model's metadata (edgenn.dim_sizes)."""
    from edgenn.specs import META_DIM_SIZES

    try:
        data = json.loads(metadata.get(META_DIM_SIZES, "{}"))
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and v > 0} if isinstance(data, dict) else {}


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The one rule for random model inputs (bench and quantize): floats ~ N(0, 1), integers 0 or 1
    (a valid index into any embedding), booleans at random."""
    if dtype.startswith("float"):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 2, shape).astype(dtype)


def stored_dim_sizes(model: Any) -> dict[str, int]:
    """The sizes of named dynamic dims the export was validated at (edgenn.dim_sizes metadata of an onnx model)."""
    return dim_sizes_of({p.key: p.value for p in model.metadata_props})
