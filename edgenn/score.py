"""`edgenn score`: offline scoring of many inputs on Ray Data, into one Parquet file.

    result = score("models/lenet5/model.onnx", "digits/", "scores.parquet", ScoreOptions(actors=2))
    result.rows_in == result.rows_out              # every row comes out, an unreadable one with its error

INPUT is a folder of pictures and .npy/.npz files (one sample each: a .npz holds one array per
input name), or Parquet (a file or a folder of them) with one column per model input. Rows are read
and scored in `map_batches` by a class-based UDF on an actor pool: one `Model` per actor, opened
once. A row that cannot be read or that the model refuses is kept with its error; it never stops
the job. The output keeps each row's id (the file's path relative to INPUT, or the Parquet `id`
column, else the row number), the top-k labels and scores of a classifier or the raw outputs of
any other model, and `error`; it is written beside OUTPUT and renamed into place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.errors import EdgennError, InputError, first_line
from edgenn.uploads import DEFAULT_MAX_PIXELS

PICTURES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ARRAYS = (".npy", ".npz")


@dataclass(frozen=True)
class ScoreOptions:
    actors: int = 1  # actors in the pool, one Model each
    batch_size: int = 64  # rows per map_batches call
    threads: int = 1  # onnxruntime intra-op threads per actor (and the CPUs Ray reserves for it)
    top_k: int = 5
    raw: bool = False  # raw outputs even for a classifier
    max_pixels: int = DEFAULT_MAX_PIXELS  # a picture larger than this is an error row, found before decoding
    address: str | None = None  # an existing Ray cluster; None: a local instance

    def checked(self) -> ScoreOptions:
        if self.actors < 1 or self.batch_size < 1 or self.threads < 1 or self.top_k < 1:
            raise InputError("--actors, --batch-size, --threads and --top-k must be 1 or more")
        return self


@dataclass(frozen=True)
class ScoreResult:
    output: str
    kind: str  # files | parquet
    rows_in: int
    rows_out: int
    errors: int
    seconds: float
    first_errors: tuple[str, ...] = ()

    @property
    def rows_per_second(self) -> float:
        return self.rows_out / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}


def score(
    model: str | os.PathLike[str],
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: ScoreOptions = ScoreOptions(),
    on_progress: Callable[[int, int], None] | None = None,
) -> ScoreResult:
    """Score every row of `source` with `model` on Ray Data; write `output` (Parquet) atomically."""
    from edgenn.fileio import atomic_path, check_file_target
    from edgenn.runtime import Model

    options = options.checked()
    output = check_file_target(output, "output", InputError)
    if output.suffix.lower() != ".parquet":
        raise InputError(f"the output {str(output)!r} is written as Parquet: name it FILE.parquet")
    model_path = str(Path(model).resolve())
    checked = Model(model_path, threads=options.threads)  # a missing or invalid model fails here, before Ray
    kind, rows = _rows(Path(source))
    started = time.perf_counter()
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    started_here = not ray.is_initialized()  # a caller's Ray is used as it is, and left running
    if started_here:
        ray.init(address=options.address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # the output's rows in the input's order
        if kind == "files":
            dataset = ray.data.from_items(rows)
        else:
            dataset = ray.data.read_parquet([str(p) for p in rows])
        scored = dataset.map_batches(
            _Scorer,
            fn_constructor_args=(model_path, kind, str(Path(source).resolve()), options),
            batch_size=options.batch_size,
            batch_format="pandas",
            concurrency=options.actors,
            num_cpus=options.threads,
        )
        count = errors = 0
        first_errors: list[str] = []
        with atomic_path(output) as tmp:
            writer = None
            try:
                for batch in scored.iter_batches(batch_format="pyarrow", batch_size=options.batch_size):
                    if kind == "parquet" and "id" not in batch.column_names:
                        batch = batch.append_column("id", pa.array([str(i) for i in range(count, count + len(batch))]))
                    if writer is None:
                        writer = pq.ParquetWriter(str(tmp), _schema(batch, checked.outputs))
                    writer.write_table(_conformed(batch, writer.schema))
                    failed = [e for e in batch.column("error").to_pylist() if e]
                    errors += len(failed)
                    first_errors.extend(failed[: max(0, 5 - len(first_errors))])
                    count += len(batch)
                    if on_progress is not None:
                        on_progress(count, len(rows) if kind == "files" else -1)
            finally:
                if writer is not None:
                    writer.close()
            if writer is None:
                raise InputError(f"{source} has no rows to score")
            if errors == count:  # nothing was scored: say why in one line, and write no file of errors
                raise InputError(f"no row of {source} could be scored ({count} rows); the first: {first_errors[0]}")
        rows_in = len(rows) if kind == "files" else count
        return ScoreResult(
            str(output), kind, rows_in, count, errors, time.perf_counter() - started, tuple(first_errors)
        )
    finally:
        if started_here:
            ray.shutdown()


def _schema(batch: Any, outputs: Any) -> Any:
    """The output's schema, from what the columns hold rather than from the first batch's values (a column of
    only nulls, as in a batch whose every row failed, has no type of its own): raw outputs are nested lists of
    their dtype, one level per dim after the batch."""
    import pyarrow as pa

    fixed = {
        "id": pa.string(),
        "label": pa.string(),
        "score": pa.float64(),
        "top_labels": pa.list_(pa.string()),
        "top_scores": pa.list_(pa.float64()),
        "error": pa.string(),
    }
    for spec in outputs:
        kind = np.dtype(spec.dtype).kind
        element = pa.bool_() if kind == "b" else pa.int64() if kind in "iu" else pa.float64()
        for _ in spec.shape[1:]:
            element = pa.list_(element)
        fixed.setdefault(spec.name, element)
    return pa.schema([pa.field(name, fixed.get(name, batch.schema.field(name).type)) for name in batch.column_names])


def _conformed(batch: Any, schema: Any) -> Any:
    """`batch` with the output's columns, in its order and types (a column of only nulls takes the type)."""
    import pyarrow as pa

    columns = []
    for field in schema:
        column = batch.column(field.name)
        columns.append(pa.nulls(len(batch), field.type) if pa.types.is_null(column.type) else column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _rows(source: Path) -> tuple[str, list[Any]]:
    """What to read: ("files", [{"id", "path"}, ...]) for a folder of pictures and arrays, ("parquet", [files])."""
    if not source.exists():
        raise InputError(f"input {str(source)!r} not found; give a folder of pictures or arrays, or Parquet")
    if source.is_file():
        if source.suffix.lower() != ".parquet":
            raise InputError(f"input {str(source)!r}: give a folder of pictures or .npy/.npz files, or a .parquet file")
        return "parquet", [source]
    parquet = sorted(source.rglob("*.parquet"))
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in PICTURES + ARRAYS)
    if parquet and files:
        raise InputError(
            f"input folder {str(source)!r} holds both Parquet and pictures or arrays: give a folder of one kind"
        )
    if parquet:
        return "parquet", parquet
    if not files:
        raise InputError(
            f"input folder {str(source)!r} holds no pictures ({', '.join(PICTURES)}), .npy/.npz files or Parquet"
        )
    return "files", [{"id": p.relative_to(source).as_posix(), "path": str(p)} for p in files]


class _Scorer:
    """The map_batches UDF: one Model per actor; rows in, one output row per input row."""

    def __init__(self, model_path: str, kind: str, root: str, options: ScoreOptions) -> None:
        from edgenn.runtime import Model
        from edgenn.runtime.files import looks_like_scores

        self.model = Model(model_path, threads=options.threads)
        self.kind, self.root, self.options = kind, root, options
        self.classify = looks_like_scores(self.model) and not options.raw

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        n = len(batch)
        feeds: list[dict[str, np.ndarray] | None] = []
        errors: list[str | None] = []
        for i in range(n):
            try:
                feeds.append(self._read(batch, i))
                errors.append(None)
            except (EdgennError, OSError, ValueError, KeyError) as exc:
                feeds.append(None)
                errors.append(first_line(exc, 300))
        results = self._run(feeds, errors)
        out: dict[str, Any] = {"id": batch["id"].astype(str).tolist()} if "id" in batch else {}
        if self.classify:
            out["label"] = [r[0][0] if r else None for r in results]
            out["score"] = [r[1][0] if r else None for r in results]
            out["top_labels"] = [r[0] if r else None for r in results]
            out["top_scores"] = [r[1] if r else None for r in results]
        else:
            for name in (s.name for s in self.model.outputs):
                out[name] = [r[name].tolist() if r else None for r in results]
        out["error"] = errors
        return pd.DataFrame(out)

    def _read(self, batch: Any, i: int) -> dict[str, np.ndarray]:
        specs = self.model.inputs
        if self.kind == "parquet":
            return {s.name: _column_value(batch, s.name, i, s.dtype) for s in specs}
        path = Path(batch["path"].iloc[i])
        suffix = path.suffix.lower()
        if suffix in PICTURES:
            from edgenn.uploads import open_picture

            picture = open_picture(path.read_bytes(), self.options.max_pixels, name=path.name)
            return {specs[0].name: self.model.picture_input(picture)}
        if suffix == ".npy":
            if len(specs) != 1:
                raise InputError(f"the model has {len(specs)} inputs: give a .npz with one array per input")
            return {specs[0].name: _with_batch(np.load(path, allow_pickle=False), specs[0])}
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        missing = [s.name for s in specs if s.name not in arrays]
        if missing:
            raise InputError(
                f"{path.name} has arrays {sorted(arrays)}; the model's inputs are {[s.name for s in specs]}"
            )
        return {s.name: _with_batch(arrays[s.name], s) for s in specs}

    def _run(self, feeds: list[dict[str, np.ndarray] | None], errors: list[str | None]) -> list[Any]:
        """Each readable row's result, the rows of equal shapes run as one batch; a refused row gets its error."""
        results: list[Any] = [None] * len(feeds)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, f in enumerate(feeds):
            if f is not None:
                groups.setdefault(tuple((n, a.shape, a.dtype.str) for n, a in f.items()), []).append(i)
        for members in groups.values():
            joined = {n: np.concatenate([feeds[i][n] for i in members]) for n in feeds[members[0]]}  # type: ignore[index]
            try:
                outputs = self._predict(joined)
            except EdgennError:  # find the rows at fault: one at a time
                for i in members:
                    try:
                        results[i] = self._predict(feeds[i])[0]  # type: ignore[arg-type]
                    except EdgennError as exc:
                        errors[i] = first_line(exc, 300)
                continue
            for row, i in enumerate(members):
                results[i] = outputs[row]
        return results

    def _predict(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        if self.classify:
            top = self.model.classify(feeds, self.options.top_k)
            return [([c.label for c in classes], [float(c.score) for c in classes]) for classes in top]
        outputs = self.model.predict(feeds)
        rows = len(next(iter(outputs.values())))
        return [{n: v[r] for n, v in outputs.items()} for r in range(rows)]


def _with_batch(array: np.ndarray, spec: Any) -> np.ndarray:
    """One sample, given without its batch dim (as files hold them), as a batch of one."""
    array = np.asarray(array)
    if array.ndim == len(spec.shape) - 1:
        array = array[None]
    if array.ndim != len(spec.shape) or array.shape[0] != 1:
        raise InputError(f"input {spec.name!r} is {spec}; the file holds an array shaped {array.shape}")
    return array.astype(spec.dtype, copy=False) if array.dtype.kind == np.dtype(spec.dtype).kind else array


def _column_value(batch: Any, name: str, i: int, dtype: str) -> np.ndarray:
    if name not in batch:
        raise InputError(f"the Parquet data has no column {name!r} (it has {', '.join(map(str, batch.columns))})")
    value = batch[name].iloc[i]
    array = np.asarray(value.tolist() if hasattr(value, "tolist") else value)
    if array.dtype == object:  # nested lists of lists, as pyarrow hands them to pandas
        array = np.array(array.tolist())
    want = np.dtype(dtype)
    if array.dtype.kind == "f" and want.kind in "iub":
        raise InputError(f"column {name!r} holds floats; the model's input is {dtype}: store it as {dtype}")
    return array.astype(want)[None]
