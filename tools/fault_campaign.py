"""The long fault campaign of issue 17: damaged and edited copies of every committed model, each loaded
and run the way an app would (`edgenn.runtime.Model`, then one `predict`), counted by what happened.

Mutants of each committed float32 model (`models/*/model.onnx`) and quantized model (`model.quant.onnx`):
- byte flips: one bit flipped at a seeded random position (`--flips` per file);
- truncations: the file cut at seeded random lengths (`--cuts` per file);
- field edits, saved with onnx as an editing tool would, once with edgenn's digest left in the file and
  once with it stripped: a NaN weight, an infinite weight, an initializer that shadows the input, a
  quantization scale of 0, -0.5 and NaN (quantized files), and bad edgenn metadata.

Outcomes: "refused" (a ModelFileError or InputError at load, one line), "warned" (loads with a
ModelWarning), "ran" (loaded and ran with no word: the count that must be 0 for byte flips, truncations
and field edits), "crashed" (any other exception: a bug). A flip that lands in the digest's own bytes is
refused like any other.

    python tools/fault_campaign.py                      # 500 flips and 50 cuts per file (a few minutes)
    python tools/fault_campaign.py --flips 50 --json faults.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUTCOMES = ("refused", "warned", "ran", "crashed")


def attempt(path: Path, feeds: dict[str, np.ndarray] | None) -> tuple[str, str]:
    """(outcome, the message) of loading `path` and running it once."""
    from edgenn.errors import InputError, ModelFileError, ModelWarning
    from edgenn.runtime import Model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = Model(path, providers="cpu", threads=1)
            if feeds is not None:
                model.predict(feeds)
        except (ModelFileError, InputError) as exc:
            return "refused", str(exc)
        except Exception as exc:  # noqa: BLE001 - counted: any other exception is a bug
            return "crashed", f"{type(exc).__name__}: {exc}"
    said = [str(w.message) for w in caught if issubclass(w.category, ModelWarning)]
    return ("warned", said[0]) if said else ("ran", "")


def feeds_for(path: Path) -> dict[str, np.ndarray]:
    from edgenn.runtime import Model

    model = Model(path, providers="cpu", threads=1)
    rng = np.random.default_rng(0)
    return {s.name: rng.random([2 if isinstance(d, str) else d for d in s.shape]).astype(s.dtype) for s in model.inputs}


def byte_mutants(data: bytes, flips: int, cuts: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out = []
    for _ in range(flips):
        position, bit = rng.randrange(len(data)), rng.randrange(8)
        mutant = bytearray(data)
        mutant[position] ^= 1 << bit
        out.append(("byte flip", bytes(mutant)))
    for _ in range(cuts):
        out.append(("truncation", data[: rng.randrange(1, len(data))]))
    return out


def field_mutants(path: Path) -> list[tuple[str, Any]]:
    """(kind, onnx ModelProto) for every field edit that applies to the file."""
    import onnx
    from onnx import numpy_helper

    def edited(change) -> Any:
        model = onnx.load(str(path))
        change(model)
        return model

    def set_first(model: Any, name: str, value: float) -> None:
        tensor = next(t for t in model.graph.initializer if t.name == name)
        values = numpy_helper.to_array(tensor).copy()
        values.flat[0] = value
        tensor.CopyFrom(numpy_helper.from_array(values, name))

    model = onnx.load(str(path))
    floats = [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    out: list[tuple[str, Any]] = []
    scales = [
        n.input[1]
        for n in model.graph.node
        if n.op_type in ("DequantizeLinear", "QuantizeLinear") and len(n.input) > 1 and n.input[1] in floats
    ]
    dynamic = {n.output[1] for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"}
    scales += [
        i for n in model.graph.node if n.op_type == "Mul" and dynamic & set(n.input) for i in n.input if i in floats
    ]
    sized = {t.name for t in model.graph.initializer if t.dims}
    weights = [name for name in floats if name not in scales and name in sized]
    if weights:
        out.append(("NaN weight", edited(lambda m: set_first(m, weights[0], float("nan")))))
        out.append(("infinite weight", edited(lambda m: set_first(m, weights[-1], float("inf")))))
    for value in (0.0, -0.5, float("nan")):
        if scales:
            out.append((f"scale {value}", edited(lambda m, v=value: set_first(m, scales[0], v))))
    if inputs:
        shape = [d.dim_value or 1 for d in inputs[0].type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type)
        shadow = numpy_helper.from_array(np.zeros(shape, dtype), inputs[0].name)
        out.append(("shadowed input", edited(lambda m: m.graph.initializer.append(shadow))))
    for key, value in (
        ("edgenn.preprocessing", '{"layout": "image", "size": [0, 0]}'),
        ("edgenn.preprocessing", '{"layout": "image", "size": [200000, 200000]}'),
        ("edgenn.preprocessing", '{"layout": "image", "size": "ab"}'),
        ("edgenn.labels", '"abc"'),
        ("edgenn.inputs", "{"),
    ):
        if any(p.key == key for p in model.metadata_props):
            out.append((f"metadata {key}", edited(lambda m, k=key, v=value: _set_metadata(m, k, v))))
    return out


def _set_metadata(model: Any, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value


def _strip_digest(model: Any) -> Any:
    from edgenn.runtime.integrity import unseal

    return unseal(model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=str(REPO / "models"))
    parser.add_argument("--flips", type=int, default=500)
    parser.add_argument("--cuts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args(argv)

    import onnx

    from edgenn.runtime.cpuinfo import cpu_model
    from edgenn.tables import table

    files = sorted(Path(args.models).glob("*/model.onnx")) + sorted(Path(args.models).glob("*/model.quant.onnx"))
    counts: dict[str, Counter[str]] = {}
    examples: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgenn-faults-") as scratch:
        target = Path(scratch) / "mutant.onnx"
        for index, path in enumerate(files):
            name = f"{path.parent.name}/{path.name}"
            print(f"[{index + 1}/{len(files)}] {name}", file=sys.stderr)
            feeds = feeds_for(path)
            baseline, _ = attempt(path, feeds)
            if baseline not in ("ran", "warned"):
                raise SystemExit(f"fault_campaign: the committed {name} itself does not run: {baseline}")
            for kind, data in byte_mutants(path.read_bytes(), args.flips, args.cuts, args.seed + index):
                target.write_bytes(data)
                outcome, message = attempt(target, feeds)
                counts.setdefault(kind, Counter())[outcome] += 1
                if outcome in ("ran", "crashed"):
                    examples.setdefault(f"{kind} {outcome}", f"{name}: {message}")
            for kind, model in field_mutants(path):
                for variant, proto in ((f"{kind} (digest kept)", model), (f"{kind} (digest stripped)", None)):
                    if proto is None:
                        proto = _strip_digest(type(model).FromString(model.SerializeToString()))
                    onnx.save(proto, str(target))
                    outcome, message = attempt(target, feeds)
                    counts.setdefault(variant, Counter())[outcome] += 1
                    examples.setdefault(f"{variant} {outcome}", f"{name}: {message[:200]}")
    seconds = time.perf_counter() - started
    rows = [(kind, *(c[o] for o in OUTCOMES), sum(c.values())) for kind, c in counts.items()]
    print(
        table(
            ["mutant", *OUTCOMES, "total"],
            rows,
            f"{len(files)} committed models, {cpu_model()}, {seconds:.0f} s",
        )
    )
    unnoticed = sum(c["ran"] + c["crashed"] for c in counts.values())
    print(f"loaded and ran with no word, or crashed: {unnoticed}")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "cpu": cpu_model(),
                    "files": [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in files],
                    "counts": {k: dict(c) for k, c in counts.items()},
                    "examples": examples,
                    "seconds": seconds,
                },
                indent=2,
            )
            + "\n"
        )
    return 0 if unnoticed == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
