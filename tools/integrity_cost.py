"""What the load-time checks cost: edgenn's digest check and fault scan against `Model()`'s whole load.

For each committed model, interleaved round by round (`--rounds`, each timing `--calls` back-to-back
calls of each): `Model(path)` (which reads the file, checks it, and opens the onnxruntime session),
the digest check alone (`integrity.digest_of` over the file, as a load does), the whole examination
of a sealed file (metadata parse + digest), the fault scan a file without a digest gets instead
(`integrity.examine` of the same file unsealed), and, for comparison, SHA-256 of the file. Medians of
the per-round figures; the share is the digest check's median over Model()'s median.

    python tools/integrity_cost.py                     # every models/*/model.onnx and model.quant.onnx
    python tools/integrity_cost.py --json cost.json

Target (issue 17): the digest check under 5% of Model() load time on the zoo models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TARGET_SHARE = 0.05


def per_call(fn: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def sides_for(path: Path, data: bytes) -> dict[str, Callable[[], Any]]:
    """What is timed for one file, each a call with no arguments."""
    import onnx

    from edgenn.runtime import Model, integrity

    span = integrity._digest_value_span(data, integrity._model_parts(data).metadata)
    if span is None:
        raise SystemExit(f"integrity_cost: {path} has no digest; rebuild the models (edgenn build --all)")
    plain = integrity.unseal(onnx.load(str(path))).SerializeToString()
    return {
        "load": lambda: Model(path, providers="cpu", threads=1),
        "digest": lambda: integrity.digest_of(data, *span),
        "examine": lambda: integrity.examine(data, path.name),
        "scan": lambda: integrity.examine(plain, path.name),
        "sha256": lambda: hashlib.sha256(data).digest(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=str(REPO / "models"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args(argv)

    from edgenn.runtime.cpuinfo import cpu_model
    from edgenn.tables import table

    files = sorted(Path(args.models).glob("*/model.onnx")) + sorted(Path(args.models).glob("*/model.quant.onnx"))
    records, rows = [], []
    for path in files:
        data = path.read_bytes()
        sides = sides_for(path, data)
        for fn in sides.values():
            fn()  # warm: imports, caches, onnxruntime's first session
        rounds: dict[str, list[float]] = {name: [] for name in sides}
        for index in range(args.rounds):
            order = list(sides) if index % 2 == 0 else list(reversed(sides))
            for name in order:
                rounds[name].append(per_call(sides[name], args.calls))
        ms = {name: 1000 * median(values) for name, values in rounds.items()}
        record = {
            "file": f"{path.parent.name}/{path.name}",
            "bytes": len(data),
            **{f"{name}_ms": value for name, value in ms.items()},
            "digest_share": ms["digest"] / ms["load"],
            "examine_share": ms["examine"] / ms["load"],
            "scan_share": ms["scan"] / ms["load"],
            "sha256_share": ms["sha256"] / ms["load"],
        }
        records.append(record)
        rows.append(
            (
                record["file"],
                f"{len(data) / 1024:.1f}",
                f"{ms['load']:.2f}",
                f"{1000 * ms['digest']:.0f} ({100 * record['digest_share']:.1f}%)",
                f"{1000 * ms['examine']:.0f} ({100 * record['examine_share']:.1f}%)",
                f"{1000 * ms['scan']:.0f} ({100 * record['scan_share']:.1f}%)",
                f"{1000 * ms['sha256']:.0f} ({100 * record['sha256_share']:.1f}%)",
            )
        )
    title = f"load-time checks against Model() on {cpu_model()}, medians of {args.rounds} interleaved rounds"
    headers = ["file", "KiB", "Model() ms", "digest us", "sealed load us", "unsealed scan us", "sha256 us"]
    print(table(headers, rows, title))
    worst = max(r["digest_share"] for r in records)
    print(f"largest digest share: {100 * worst:.1f}% (target under {100 * TARGET_SHARE:.0f}%)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cpu": cpu_model(), "files": records}, indent=2) + "\n")
    return 0 if worst < TARGET_SHARE else 3


if __name__ == "__main__":
    sys.exit(main())
