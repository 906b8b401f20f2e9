"""What a huge batch costs in memory, and what `Model(max_batch=..., memory=...)` does about it.

Each configuration runs in a fresh process: the input is made (seeded), the model loaded, the
resident set size (RSS) read; then one `predict` on the whole batch while a thread samples RSS every
2 ms; then RSS again after the call (the outputs kept, as an app keeps them). Every configuration's
outputs are hashed: configurations whose hashes agree gave bitwise the same outputs. Configurations
are run round-robin `--rounds` times and the medians reported.

    python tools/memory_bench.py                                   # lenet5, 100,000 samples
    python tools/memory_bench.py --model models/resnet/model.onnx --samples 20000 --json out.json

Targets (issue 17): with the default chunking, peak RSS under 1.5 GB for a 100,000-sample LeNet-5 batch,
back within 100 MB of the starting RSS after the call, outputs identical to one big batch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (label, max_batch, memory, input kind)
CONFIGS = (
    ("whole batch, arena", None, "arena", "float32"),
    ("whole batch, lean", None, "lean", "float32"),
    ("chunks of 64, arena", 64, "arena", "float32"),
    ("chunks of 256, arena (default)", 256, "arena", "float32"),
    ("chunks of 256, lean", 256, "lean", "float32"),
    ("chunks of 1024, arena", 1024, "arena", "float32"),
    ("whole batch, float64 input", None, "arena", "float64"),
    ("chunks of 256, float64 input", 256, "arena", "float64"),
    ("whole batch, strided input", None, "arena", "strided"),
    ("chunks of 256, strided input", 256, "arena", "strided"),
)

_CHILD = r"""
import hashlib, json, sys, threading, time
import numpy as np
from edgenn.runtime import Model

path, samples, max_batch, memory, kind, threads = sys.argv[1:7]
max_batch = None if max_batch == "none" else int(max_batch)
page = __import__("os").sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page

model = Model(path, providers="cpu", threads=int(threads), max_batch=max_batch, memory=memory)
shape = [int(samples), *[d if isinstance(d, int) else 1 for d in model.inputs[0].shape[1:]]]
x = np.random.default_rng(0).random(shape, dtype=np.float32)  # the same values in every configuration
if kind == "float64":
    x = x.astype(np.float64)
elif kind == "strided":  # the same values as every other row of a larger array: a view, not contiguous
    wide = np.empty((2 * shape[0], *shape[1:]), dtype=np.float32)
    wide[::2] = x
    del x
    x = wide[::2]
model.predict(x[:8])  # the first call's one-off allocations are not the batch's
start = rss()
peak = [start]
done = threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)

sampler = threading.Thread(target=sample)
sampler.start()
began = time.perf_counter()
out = model.predict(x)
seconds = time.perf_counter() - began
done.set()
sampler.join()
peak[0] = max(peak[0], rss())
after = rss()
digest = hashlib.sha256(b"".join(np.ascontiguousarray(v).tobytes() for v in out.values())).hexdigest()[:16]
print(json.dumps({"start": start, "peak": peak[0], "after": after, "seconds": seconds, "digest": digest}))
"""


def run_one(model: str, samples: int, max_batch: int | None, memory: str, kind: str, threads: int) -> dict[str, Any]:
    command = [sys.executable, "-c", _CHILD, model, str(samples), str(max_batch or "none"), memory, kind, str(threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory_bench: {model} {max_batch} {memory} {kind} failed: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models/lenet5/model.onnx"))
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", dest="json_out", help="Write the figures here too.")
    args = parser.parse_args(argv)

    from edgenn.runtime.cpuinfo import cpu_model
    from edgenn.tables import table

    figures: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in CONFIGS}
    for round_index in range(args.rounds):
        for label, max_batch, memory, kind in CONFIGS:
            print(f"round {round_index + 1}/{args.rounds}: {label}", file=sys.stderr)
            figures[label].append(run_one(args.model, args.samples, max_batch, memory, kind, args.threads))
    mib = 1024 * 1024
    reference = figures[CONFIGS[0][0]][0]["digest"]
    rows, records = [], []
    for label, max_batch, memory, kind in CONFIGS:
        runs = figures[label]
        record = {
            "config": label,
            "max_batch": max_batch,
            "memory": memory,
            "input": kind,
            "start_mib": median(r["start"] for r in runs) / mib,
            "peak_mib": median(r["peak"] for r in runs) / mib,
            "after_mib": median(r["after"] for r in runs) / mib,
            "retained_mib": median(r["after"] - r["start"] for r in runs) / mib,
            "seconds": median(r["seconds"] for r in runs),
            "same_outputs": all(r["digest"] == reference for r in runs),
        }
        records.append(record)
        rows.append(
            (
                label,
                f"{record['start_mib']:.0f}",
                f"{record['peak_mib']:.0f}",
                f"{record['retained_mib']:+.0f}",
                f"{record['seconds']:.2f}",
                "yes" if record["same_outputs"] else "NO",
            )
        )
    title = (
        f"{Path(args.model).parent.name}: one predict of {args.samples:,} samples, {args.threads} threads, "
        f"{cpu_model()}; medians of {args.rounds} fresh processes"
    )
    print(table(["configuration", "start MiB", "peak MiB", "kept after MiB", "seconds", "same outputs"], rows, title))
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"model": args.model, "samples": args.samples, "cpu": cpu_model(), "runs": records}, indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
