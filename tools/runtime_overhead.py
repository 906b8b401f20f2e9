"""What the seam costs: `Model.predict` against a bare `session.run` loop on the same session.

Both run the same session (opened by edgenn's session layer, so the same graph, provider, precision
and threads) on the same batch-1 input, interleaved round by round (which side goes first
alternates); each round times `--calls` calls of each, and the figure is the median of the
per-round ratios (edgenn.stats). One measurement per provider asked for.

    python tools/runtime_overhead.py                                  # models/lenet5/model.onnx, CPU
    python tools/runtime_overhead.py --providers cpu,openvino --json
    python tools/runtime_overhead.py --providers openvino --lift-vendor-gate   # on a non-Intel CPU
    python tools/runtime_overhead.py --model models/simple_cnn/deploy --batch 1  # a tuned folder's route

Targets: issue 4, the wrapper at most 10% slower than the bare loop on LeNet-5 at batch 1; issue 11
(one session layer for every stage), at most 5%, on the CPU provider and on OpenVINO; issue 12, at most
5% for Model(DEPLOY_DIR), which dispatches by batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TARGET_OVERHEAD = 0.05
REPO = Path(__file__).resolve().parent.parent


def time_calls(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call, for `calls` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(
    model_path: str,
    rounds: int,
    calls: int,
    threads: int,
    warmup: int,
    check_finite: bool = False,
    provider: str = "cpu",
    batch: int = 1,
) -> dict[str, Any]:
    from edgenn.runtime import Model
    from edgenn.stats import paired_ratio, summarize

    if Path(model_path).is_dir():  # a folder from edgenn tune: Model dispatches by batch size
        model = Model(model_path, threads=threads, check_finite=check_finite)
    else:
        model = Model(model_path, providers=provider, threads=threads, check_finite=check_finite)
    session = model.member_for(batch).session  # the session that serves this batch size
    spec = model.inputs[0]
    x = np.random.default_rng(0).random(spec.concrete_shape(batch), dtype=np.float32)
    feed = {spec.name: x}
    names = [o.name for o in model.outputs]

    def raw() -> Any:
        return session.run(names, feed)

    def wrapped() -> Any:
        return model.predict(x)

    if not np.array_equal(raw()[0], wrapped()[names[0]]):  # one session: the very same numbers
        raise SystemExit("the wrapper and the bare session disagree: fix that before timing them")
    time_calls(raw, warmup)
    time_calls(wrapped, warmup)
    raw_times, wrapped_times = [], []
    for round_index in range(rounds):
        if round_index % 2 == 0:
            raw_times.append(time_calls(raw, calls))
            wrapped_times.append(time_calls(wrapped, calls))
        else:
            wrapped_times.append(time_calls(wrapped, calls))
            raw_times.append(time_calls(raw, calls))
    ratio = paired_ratio(wrapped_times, raw_times)
    return {
        "model": model_path,
        "provider": provider,
        "session": model.session_info.to_dict(),
        "input": str(spec),
        "batch": batch,
        "deployment": model.route_for(batch).candidate.id if model.routes else None,
        "threads": threads,
        "check_finite": check_finite,
        "rounds": rounds,
        "calls_per_round": calls,
        "raw_session_run_us": summarize(raw_times).scaled(1e6).to_dict(),
        "model_predict_us": summarize(wrapped_times).scaled(1e6).to_dict(),
        "ratio": ratio.to_dict(),
        "overhead": ratio.median - 1.0,
        "target_overhead": TARGET_OVERHEAD,
        "passed": ratio.median - 1.0 <= TARGET_OVERHEAD,
        "machine": _cpu(),
    }


def _cpu() -> str:
    from edgenn.environment import collect_environment

    env = collect_environment()
    return f"{env.cpu_model} ({' '.join(env.cpu_flags)}), {env.usable_cores} cores"


def export_lenet(folder: Path, epochs: int) -> str:
    """A trained LeNet-5 exported by edgenn (torch is needed for this step only)."""
    from edgenn.export import export_source
    from edgenn.train import TrainConfig, train

    weights = train(TrainConfig.for_model("lenet5", epochs=epochs), folder).weights_path
    target = folder / "lenet5.onnx"
    export_source("lenet5", target, weights=weights).raise_for_failure()
    return str(target)


def render(result: dict[str, Any]) -> str:
    from edgenn.report import key_values

    raw, wrapped, ratio = result["raw_session_run_us"], result["model_predict_us"], result["ratio"]
    return key_values(
        [
            ("model", f"{result['model']} ({result['input']}), batch {result['batch']}, {result['threads']} thread(s)"),
            ("deployment route", result["deployment"] or "-"),
            ("session", result["session"]["requested"] + " -> " + _summary(result["session"])),
            ("cpu", result["machine"]),
            ("check_finite", result["check_finite"]),
            ("rounds", f"{result['rounds']} x {result['calls_per_round']} calls each, interleaved"),
            ("session.run", f"{raw['median']:.2f} us/call median (p90 {raw['p90']:.2f})"),
            ("Model.predict", f"{wrapped['median']:.2f} us/call median (p90 {wrapped['p90']:.2f})"),
            ("ratio", f"{ratio['median']:.4f} (95% CI {ratio['ci_low']:.4f}..{ratio['ci_high']:.4f})"),
            (
                "overhead",
                f"{100 * result['overhead']:+.1f}% (target <= {100 * TARGET_OVERHEAD:.0f}%): "
                f"{'met' if result['passed'] else 'NOT met'}",
            ),
        ]
    )


def _summary(info: dict[str, Any]) -> str:
    return f"{info['provider']} {info['device']} ({info['device_description']}) {info['precision']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=str(REPO / "models" / "lenet5" / "model.onnx"),
        help="an exported .onnx [models/lenet5/model.onnx]; 'train' trains and exports LeNet-5 now",
    )
    parser.add_argument("--providers", default="cpu", help="comma list of providers, e.g. cpu,openvino")
    parser.add_argument(
        "--lift-vendor-gate",
        action="store_true",
        help="let the OpenVINO plugin offer its CPU device on a non-Intel CPU (tools/openvino_vendor_gate.py)",
    )
    parser.add_argument("--rounds", type=int, default=201)
    parser.add_argument("--calls", type=int, default=200, help="calls per side per round")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--batch", type=int, default=1, help="batch size (a deployment folder: picks the route)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs when exporting LeNet-5")
    parser.add_argument("--check-finite", action="store_true", help="time Model(check_finite=True)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.lift_vendor_gate:
        import openvino_vendor_gate

        openvino_vendor_gate.lift()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        model_path = export_lenet(Path(folder), args.epochs) if args.model == "train" else args.model
        for provider in [p.strip() for p in args.providers.split(",") if p.strip()]:
            results.append(
                measure(
                    model_path,
                    args.rounds,
                    args.calls,
                    args.threads,
                    args.warmup,
                    args.check_finite,
                    provider,
                    args.batch,
                )
            )
    print(json.dumps(results, indent=2) if args.json else "\n\n".join(render(r) for r in results))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
