"""Every zoo model on every execution provider and precision present, with its accuracy beside each figure.

For each model of models/ (the committed fp32 file and its quantized file), one `edgenn bench` run
puts every provider x precision present side by side at batch 1 and 64, with 1 thread and with all
cores; then each (file, provider, precision) is run over the digits test split for its accuracy.

    python tools/providers_zoo.py                                  # every provider present here
    python tools/providers_zoo.py --models resnet,simple_cnn --seconds 2 --json providers.json
    python tools/providers_zoo.py --lift-vendor-gate               # OpenVINO on a non-Intel CPU

"vs cpu fp32" is the contender's median over the CPU provider's fp32-file median, both measured in
the same interleaved run (>1: faster). Issue 11's figure: OpenVINO's row for simple_cnn and resnet
at batch 64 at least 2x the CPU provider's fp32 row on a CPU with AMX, 1.5x on AVX-512 without.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ZOO = ("mlp", "lenet5", "simple_cnn", "resnet", "lstm", "gru", "activations")
FILES = (("fp32", "model.onnx"), ("int8", "model.quant.onnx"))


def measure_model(name: str, args: argparse.Namespace, providers: list[str]) -> list[dict[str, Any]]:
    from edgenn.bench import BenchOptions, bench

    folder = Path(args.models_dir) / name
    paths = [folder / file for _, file in FILES]
    kinds = {str(folder / file): kind for kind, file in FILES}
    from edgenn.build import bench_inputs

    options = BenchOptions(
        inputs=bench_inputs(name),
        providers=tuple(providers),
        precisions=tuple(args.precisions.split(",")),
        threads=tuple(sorted({1, os.cpu_count() or 1})),
        batches=(1, 64),
        seconds=args.seconds,
        warmup=args.warmup,
    )
    report = bench(paths, options=options)
    by_variant = {v.name: kinds[v.source] for v in report.variants}
    rows = []
    for r in report.results:
        base = report.result(report.variants[0].name, "cpu", "f32", r.threads, r.batch)
        rows.append(
            {
                "model": name,
                "file": by_variant[r.variant],
                "provider": r.provider,
                "precision": r.precision,
                "threads": r.threads,
                "batch": r.batch,
                "median_ms": r.latency_ms.median,
                "p90_ms": r.latency_ms.p90,
                "vs_cpu_fp32": (base.latency_ms.median / r.latency_ms.median) if base else None,
                "paired_speedup": r.speedup.median if r.speedup else None,
                "baseline": r.baseline,
                "placement": r.placement,
                "waited_for_cpu": r.waited_for_cpu,
            }
        )
    accuracy = accuracies(name, folder, sorted({(r["file"], r["provider"], r["precision"]) for r in rows}))
    for row in rows:
        row["test_accuracy"] = accuracy[(row["file"], row["provider"], row["precision"])]
    skipped = [
        {"model": name, "file": by_variant.get(s.variant, s.variant), "provider": s.provider, "reason": s.reason}
        for s in report.skipped
        if s.threads in (None, max(options.threads))  # once per contender, not once per thread count
    ]
    return rows, skipped


def accuracies(name: str, folder: Path, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], float]:
    """Test-split accuracy of each (file, provider, precision), through edgenn's own session layer."""
    import numpy as np

    from edgenn.data import load_digits_split
    from edgenn.runtime import Model

    test = load_digits_split().test
    files = dict(FILES)
    found = {}
    for kind, provider, precision in keys:
        model = Model(folder / files[kind], providers=provider, precision=precision, fallback=True)
        scores = model.predict(test.inputs(model.preprocessing))[model.outputs[0].name]
        found[(kind, provider, precision)] = float(np.mean(scores.argmax(axis=1) == np.asarray(test.labels)))
    return found


def render(rows: list[dict[str, Any]], environment: Any) -> str:
    from edgenn.report import table

    body = [
        (
            r["model"],
            r["file"],
            r["provider"] + ("" if r["precision"] == "f32" else f" {r['precision']}"),
            r["threads"],
            r["batch"],
            f"{r['median_ms']:.4f}" + ("*" if r["waited_for_cpu"] else ""),
            "-" if r["vs_cpu_fp32"] is None else f"{r['vs_cpu_fp32']:.2f}x",
            f"{100 * r['test_accuracy']:.2f}%",
        )
        for r in rows
    ]
    head = f"{environment.cpu_model}; {' '.join(environment.cpu_flags)}; {environment.usable_cores} cores"
    return table(
        ["model", "file", "provider", "threads", "batch", "median ms", "vs cpu fp32", "test accuracy"],
        body,
        title=head,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ZOO), help="comma list of zoo models [all]")
    parser.add_argument("--models-dir", default=str(REPO / "models"))
    parser.add_argument("--precisions", default="f32,bf16,f16", help="asked of every provider [f32,bf16,f16]")
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget of one bench point")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", metavar="FILE", help="also write every row, and the machine, as JSON")
    parser.add_argument(
        "--lift-vendor-gate",
        action="store_true",
        help="let the OpenVINO plugin offer its CPU device on a non-Intel CPU (tools/openvino_vendor_gate.py)",
    )
    args = parser.parse_args(argv)
    if args.lift_vendor_gate:
        import openvino_vendor_gate

        openvino_vendor_gate.lift()
    from edgenn.environment import collect_environment
    from edgenn.runtime.providers import present

    providers = list(reversed(present()))  # cpu first: the baseline of every point
    started = time.perf_counter()
    rows, skipped = [], []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"{name}: {', '.join(providers)} ...", file=sys.stderr)
        got, not_run = measure_model(name, args, providers)
        rows += got
        skipped += not_run
    environment = collect_environment()
    print(render(rows, environment))
    for line in dict.fromkeys(
        f"skipped {s['model']} {s['file']} on {s['provider']}: {s['reason']}"
        if s["file"] != "*"
        else f"skipped {s['provider']}: {s['reason']}"
        for s in skipped
    ):
        print(line)
    print(f"\n{time.perf_counter() - started:.0f} s; * = calls waited for a core")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "environment": environment.to_dict(),
                    "gate_lifted": args.lift_vendor_gate,
                    "rows": rows,
                    "skipped": skipped,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
