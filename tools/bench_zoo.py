"""fp32 ONNX against eager PyTorch for every zoo model, at batch 1 and 64: the figures of issue 6.

For each model: train briefly (speed does not depend on accuracy; 3 epochs by default), export
with edgenn.export (fp32, dynamic batch), then `edgenn bench MODEL.onnx --eager MODEL --weights W
--batch 1,64` in this process: both interleaved in rounds, speedup = eager time / ONNX time, paired
per round (median and distribution-free 95% interval). Recurrent models get 8 time steps (the rows
of a digit). The same figures for one model, from the command line:

    edgenn train lenet5 --epochs 3 --out runs/lenet5
    edgenn export lenet5 --weights runs/lenet5/model.safetensors -o lenet5.onnx
    edgenn bench lenet5.onnx --eager lenet5 --weights runs/lenet5/model.safetensors --batch 1,64 --seconds 2

    python tools/bench_zoo.py                       # every zoo model, 1 thread, about 2 minutes here
    python tools/bench_zoo.py --threads 2 --seconds 4 --json zoo-bench.json

It exits 1 when calls of a one-thread run waited for a core (another program was running): rerun then.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any


def prepare(name: str, folder: Path, epochs: int) -> tuple[Path, Path | None]:
    """(the exported .onnx, the weights it came from; None for the untrainable demo model)."""
    from edgenn import zoo
    from edgenn.export import ExportOptions, export_source
    from edgenn.train import TrainConfig, train

    weights = None
    if zoo.entry(name).trainable:
        weights = train(TrainConfig.for_model(name, epochs=epochs), folder / name).weights_path
    path = folder / f"{name}.onnx"
    export_source(name, path, weights, ExportOptions(parity_batches=(2,))).raise_for_failure()
    return path, weights


def fixed_dims(name: str) -> tuple[Any, ...]:
    """--input specs giving every dynamic dim but the batch a size of 8 (digits have 8 rows)."""
    from edgenn import zoo
    from edgenn.specs import BATCH, TensorSpec

    specs = []
    for spec in zoo.entry(name).inputs:
        if any(isinstance(d, str) and d != BATCH for d in spec.shape):
            specs.append(
                TensorSpec(
                    spec.name,
                    tuple(d if d == BATCH or isinstance(d, int) else 8 for d in spec.shape),
                    spec.dtype,
                )
            )
    return tuple(specs)


def measure(name: str, folder: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from edgenn.bench import BenchOptions, bench

    path, weights = prepare(name, folder, args.epochs)
    options = BenchOptions(threads=(args.threads,), batches=(1, 64), seconds=args.seconds, inputs=fixed_dims(name))
    report = bench([path], eager=name, weights=weights, options=options)
    rows = []
    for batch in (1, 64):
        onnx_row = next(r for r in report.results if r.batch == batch and r.variant == name)
        eager_row = next(r for r in report.results if r.batch == batch and r.variant == f"eager:{name}")
        rows.append(
            {
                "model": name,
                "batch": batch,
                "onnx_median_ms": onnx_row.latency_ms.median,
                "eager_median_ms": eager_row.latency_ms.median,
                "speedup": onnx_row.speedup.median,
                "ci_low": onnx_row.speedup.ci_low,
                "ci_high": onnx_row.speedup.ci_high,
                "rounds": onnx_row.rounds,
                "waited_for_cpu": onnx_row.waited_for_cpu or eager_row.waited_for_cpu,
                "environment": report.environment.to_dict() if batch == 1 else None,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma list (default: every zoo model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per point (both variants)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from edgenn import zoo
    from edgenn.report import table

    names = args.models.split(",") if args.models else zoo.names()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for name in names for row in measure(name, Path(tmp), args)]
    env = rows[0]["environment"]
    print(
        table(
            ["model", "batch", "onnx ms", "eager ms", "onnx speedup", "95% CI", "calls waited for a core"],
            [
                (
                    r["model"],
                    r["batch"],
                    f"{r['onnx_median_ms']:.4f}",
                    f"{r['eager_median_ms']:.4f}",
                    f"{r['speedup']:.2f}x",
                    f"{r['ci_low']:.2f}-{r['ci_high']:.2f}",
                    "yes: rerun" if r["waited_for_cpu"] else "no",
                )
                for r in rows
            ],
            title=f"fp32 ONNX (onnxruntime {env['versions'].get('onnxruntime')}, CPU) against eager torch "
            f"{env['versions'].get('torch')}, {args.threads} thread(s), {env['cpu_model']}, medians",
        )
    )
    if args.json:
        from edgenn.fileio import write_text_atomic

        write_text_atomic(args.json, json.dumps(rows, indent=2) + "\n")
    return 1 if any(r["waited_for_cpu"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
