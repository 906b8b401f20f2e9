"""Peak memory of `edgenn compare --layerwise` against a plain run of the same model (issue 14).

The model is onnx's bundled light ResNet-50 (onnx/backend/test/data/light: 415 nodes, its 25.6 M
weights made at load time by ConstantOfShape, so the file is 80 KB and the session holds ~100 MB).
Each measurement runs in a fresh process and reports the process's peak resident set (Linux
VmHWM, which includes Python, numpy and onnxruntime themselves):

- plain: one session on each provider, one run on one input;
- layerwise: the model on the CPU provider against itself on OpenVINO's (CPU device), every layer,
  carried and local figures, in chunks of --chunk tensors.

    python tools/layerwise_memory.py [--chunk 64] [--json FILE]

On a CPU that is not Intel's, the OpenVINO plugin offers no device; this script lifts that vendor
check in its own processes (tools/openvino_vendor_gate.py), as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent


def light_resnet50() -> Path:
    import onnx

    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
    if not path.is_file():
        raise SystemExit(f"{path} not found: this onnx wheel has no bundled light models")
    return path


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


def child(mode: str, chunk: int) -> None:
    """Runs in the measured process: prints one JSON line."""
    sys.path.insert(0, str(TOOLS))
    import numpy as np

    openvino = _lift_openvino()
    model = light_resnet50()
    reference, candidate = ("cpu", "openvino") if openvino else ("cpu", "cpu")
    if mode.startswith("plain"):
        from edgenn.runtime.session import SessionConfig, open_session

        provider = mode.split(":", 1)[1]
        config = SessionConfig.parse(provider)
        runner = open_session(model, config)
        (spec,) = runner.inputs
        x = np.random.default_rng(0).standard_normal((1, *spec.shape[1:])).astype(np.float32)
        runner.infer({spec.name: x})
        print(json.dumps({"mode": mode, "peak_mb": peak_mb()}))
        return
    import time

    from edgenn.compare import CompareOptions, compare

    if not openvino:
        raise SystemExit("the OpenVINO provider is not usable here; nothing to compare against")
    b = f"{model}@{candidate}"
    started = time.perf_counter()
    report = compare(f"{model}@{reference}", b, CompareOptions(layerwise=True, batch=1, chunk=chunk))
    lw = report.layerwise
    print(
        json.dumps(
            {
                "mode": mode,
                "peak_mb": peak_mb(),
                "seconds": round(time.perf_counter() - started, 1),
                "layers": len(lw.layers),
                "chunk": chunk,
                "first_departure": None if lw.first_departure is None else lw.first_departure.tensor,
                "worst_carried": max(la.carried.relative for la in lw.layers if la.carried),
                "tolerance": lw.tolerance,
            }
        )
    )


def _lift_openvino() -> bool:
    """Lift the plugin's vendor check where the CPU is not Intel's: before the plugin is first registered."""
    if "GenuineIntel" not in Path("/proc/cpuinfo").read_text(errors="replace"):
        try:
            import openvino_vendor_gate

            openvino_vendor_gate.lift()
        except Exception:  # another platform or build: measure what is here
            return False
    from edgenn.runtime import providers

    return providers.unavailable_reason("openvino") is None


def measure(mode: str, chunk: int) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--chunk", str(chunk)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.chunk)
        return
    from edgenn.environment import collect_environment

    env = collect_environment()
    rows = [measure("plain:cpu", args.chunk), measure("plain:openvino", args.chunk), measure("layerwise", args.chunk)]
    plain = max(r["peak_mb"] for r in rows[:2])
    layerwise = rows[2]
    result = {
        "cpu": env.cpu_model,
        "model": str(light_resnet50().name),
        "runs": rows,
        "ratio_to_larger_plain_run": round(layerwise["peak_mb"] / plain, 3),
    }
    for r in rows:
        extra = "" if r["mode"] != "layerwise" else f"  ({r['layers']} layers in {r['seconds']} s, chunk {r['chunk']})"
        print(f"{r['mode']:<16} peak RSS {r['peak_mb']:8.1f} MB{extra}")
    print(f"layerwise / larger plain run: {result['ratio_to_larger_plain_run']:.2f}x  on {env.cpu_model}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
