#!/usr/bin/env python3
"""Quantize every zoo model with every recipe; print accuracy, size and int8/fp32 throughput.

    python tools/quantize_zoo.py [--models lenet5,resnet] [--recipes static-qdq,dynamic] [--json out.json]

Weights come from models/<name>/model.safetensors where `edgenn build` committed them; a model
without them is trained first with default settings. Each zoo model is exported once, then each
recipe goes through `edgenn.quantize.quantize`, which measures the fp32 model and the quantized one
side by side in one run: accuracy on the digits test split, file sizes, and latency at batch 1 and
64 interleaved round by round (medians, one intra-op thread). "speedup" is fp32 time / quantized
time, i.e. the quantized model's throughput over fp32's. Besides the library's recipes, the
diagnostic recipe "static-qdq-all-int8" quantizes every conv and the output layer too (what the
library keeps in float for speed and accuracy), to show what those rules are worth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgenn import zoo
from edgenn.errors import EdgennError
from edgenn.evaluate import LatencyOptions
from edgenn.export import export_source
from edgenn.quantize import QuantizeOptions, quantize
from edgenn.report import table

RECIPES: dict[str, dict[str, Any]] = {
    "static-qdq": dict(mode="static"),
    "static-qdq-all-int8": dict(mode="static", min_conv_channels=0, keep_output_layer_float=False),
    "static-qdq-per-tensor": dict(mode="static", per_channel=False),
    "static-qoperator": dict(mode="static", format="qoperator"),
    "dynamic": dict(mode="dynamic", per_channel=False),
    "fp16": dict(mode="fp16"),
}


def weights_for(name: str, models_dir: Path, scratch: Path) -> Path:
    committed = models_dir / name / "model.safetensors"
    if committed.is_file():
        return committed
    from edgenn.train import TrainConfig, train

    print(f"training {name} (default settings)", file=sys.stderr)
    return train(TrainConfig.for_model(name), scratch / name).weights_path


def measure(model: Path, out: Path, recipe: str, latency: LatencyOptions) -> dict[str, Any]:
    try:
        result = quantize(model, out, QuantizeOptions(latency=latency, **RECIPES[recipe]))
    except EdgennError as exc:
        return {"recipe": recipe, "error": str(exc)}
    e = result.evaluation
    return {
        "recipe": recipe,
        "fp32_accuracy": e.fp32_accuracy,
        "accuracy": e.quantized_accuracy,
        "drop_points": e.drop_points,
        "max_abs_error": e.max_abs_error,
        "fp32_kib": e.fp32_bytes / 1024,
        "size_ratio": e.size_ratio,
        "speedup_1": e.speedup_at(1),
        "speedup_64": e.speedup_at(64),
        "fp32_ms_64": next(lat.fp32_ms for lat in e.latency if lat.batch_size == 64),
        "quantized_ms_64": next(lat.quantized_ms for lat in e.latency if lat.batch_size == 64),
        "int8_kernels": e.kernels.int8_compute,
        "float_kernels": e.kernels.float_compute,
        "fp16_nodes": None if e.kernels.fp16_nodes is None else f"{e.kernels.fp16_nodes}/{e.kernels.fp16_candidates}",
        "kept_float": [f"{k.node} ({k.op_type})" for k in result.kept_float],
        "notes": list(result.notes),
    }


def row(name: str, m: dict[str, Any]) -> tuple[Any, ...]:
    if "error" in m:
        return (name, m["recipe"], "-", "-", "-", "-", "-", "-", "-", m["error"][:90])
    kernels = m["fp16_nodes"] + " fp16" if m["fp16_nodes"] else f"{m['int8_kernels']} int8 / {m['float_kernels']} fp"
    return (name, m["recipe"], f"{100 * m['fp32_accuracy']:.2f}%", f"{100 * m['accuracy']:.2f}%",
            f"{m['drop_points']:+.2f}", f"{100 * m['size_ratio']:.1f}%", f"{m['speedup_1']:.2f}x",
            f"{m['speedup_64']:.2f}x", kernels, f"{m['max_abs_error']:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(n for n in zoo.names() if zoo.entry(n).trainable))
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="edgenn-quantize-zoo-")))
    parser.add_argument("--rounds", type=int, default=20, help="Interleaved timing rounds per batch size.")
    parser.add_argument("--json", type=Path, help="Also write every figure here.")
    args = parser.parse_args()
    latency = LatencyOptions(rounds=args.rounds, repeats=3, warmup=5, threads=1)
    started = time.perf_counter()
    rows, records = [], []
    for name in args.models.split(","):
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        model = folder / f"{name}.onnx"
        export_source(name, model, weights=weights_for(name, args.models_dir, args.out)).raise_for_failure()
        for recipe in args.recipes.split(","):
            print(f"{name}: {recipe}", file=sys.stderr)
            figures = measure(model, folder / f"{name}.{recipe}.onnx", recipe, latency)
            records.append({"model": name, **figures})
            rows.append(row(name, figures))
    print(table(["model", "recipe", "fp32 acc", "quant acc", "drop (pts)", "size", "speedup b1", "speedup b64",
                 "kernels run", "max abs err / error"], rows,
                title=f"digits test split (360 images); {os.cpu_count()} CPUs, 1 intra-op thread; "
                      f"load average {os.getloadavg()[0]:.1f} at the end"))
    print(f"\n{time.perf_counter() - started:.0f} s; models and quantized files in {args.out}")
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
