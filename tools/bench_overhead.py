"""The harness's own overhead: the median `edgenn bench` reports against a bare `session.run` loop.

For a one-node Identity model (onnx.helper) and LeNet-5 (exported, untrained: speed does not
depend on the weights), at batch 1 on one CPU thread, in one process, alternating several times:
- bare: a fresh InferenceSession, `session.run(output_names, feeds)` in a loop, each call timed with
  perf_counter_ns (median), and the same loop timed as a whole (mean per call, no per-call clock).
  The output names are passed, as the harness does: `session.run(None, ...)` makes ORT rebuild
  the name list on every call, about 0.25 us here, 7% of the Identity model's 3.3 us;
- harness: edgenn.bench.bench([model], runs=N) (its own session), the median it reports.
The figure is median(harness medians) / median(bare medians) - 1; the target is within 5%.

    python tools/bench_overhead.py              # about 20 s on 2 cores
    python tools/bench_overhead.py --repeats 9 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET = 0.05


def identity_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 64])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def lenet5_model(path: Path) -> Path:
    from edgenn.export import ExportOptions, export_source

    export_source("lenet5", path, options=ExportOptions(parity_batches=(1,))).raise_for_failure()
    return path


def bare_loop(path: Path, calls: int, warmup: int) -> tuple[float, float]:
    """(median ns per call with a clock around each call, mean ns per call of the untimed loop)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in spec.shape]
    feeds = {spec.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    names = [o.name for o in session.get_outputs()]
    for _ in range(warmup):
        session.run(names, feeds)
    clock, times = time.perf_counter_ns, np.empty(calls, dtype=np.int64)
    for i in range(calls):
        t0 = clock()
        session.run(names, feeds)
        times[i] = clock() - t0
    start = clock()
    for _ in range(calls):
        session.run(names, feeds)
    return float(np.median(times)), (clock() - start) / calls


def harness(path: Path, calls: int, warmup: int) -> float:
    from edgenn.bench import BenchOptions, bench

    report = bench([path], options=BenchOptions(threads=(1,), batches=(1,), warmup=warmup, runs=calls))
    return report.results[0].latency_ms.median * 1e6


def measure(path: Path, calls: int, warmup: int, repeats: int) -> dict[str, Any]:
    bare, whole, ours = [], [], []
    for i in range(repeats):  # alternate who goes first, so drift does not favour one side
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for side in order:
            if side == 0:
                median, mean = bare_loop(path, calls, warmup)
                bare.append(median)
                whole.append(mean)
            else:
                ours.append(harness(path, calls, warmup))
    bare_median, ours_median = float(np.median(bare)), float(np.median(ours))
    overhead = ours_median / bare_median - 1
    return {
        "model": path.stem,
        "calls": calls,
        "repeats": repeats,
        "bare_median_us": bare_median / 1e3,
        "bare_loop_mean_us": float(np.median(whole)) / 1e3,
        "harness_median_us": ours_median / 1e3,
        "overhead": overhead,
        "within_target": abs(overhead) <= TARGET,
        "bare_runs_us": [b / 1e3 for b in bare],
        "harness_runs_us": [o / 1e3 for o in ours],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per side and repeat")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        models = [identity_model(Path(tmp) / "identity.onnx"), lenet5_model(Path(tmp) / "lenet5.onnx")]
        rows = [
            measure(m, args.calls if "identity" in m.name else args.calls // 4, args.warmup, args.repeats)
            for m in models
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        from edgenn.environment import collect_environment
        from edgenn.report import table

        env = collect_environment()
        print(
            table(
                [
                    "model",
                    "calls",
                    "bare median us",
                    "bare loop mean us",
                    "harness median us",
                    "overhead",
                    "within 5%",
                ],
                [
                    (
                        r["model"],
                        r["calls"],
                        f"{r['bare_median_us']:.3f}",
                        f"{r['bare_loop_mean_us']:.3f}",
                        f"{r['harness_median_us']:.3f}",
                        f"{100 * r['overhead']:+.2f}%",
                        "yes" if r["within_target"] else "NO",
                    )
                    for r in rows
                ],
                title=f"edgenn bench overhead, batch 1, 1 thread, {env.cpu_model}, "
                f"onnxruntime {env.versions.get('onnxruntime')}, "
                f"median of {args.repeats} alternating repeats",
            )
        )
    return 0 if all(r["within_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
