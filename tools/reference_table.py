#!/usr/bin/env python3
"""Write the README's reference results table from the model cards in models/*/card.json.

python tools/reference_table.py            # rewrite the table in README.md
python tools/reference_table.py --check    # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- reference-results:start (tools/reference_table.py writes this table) -->"
END = "<!-- reference-results:end -->"


def _row(card: dict) -> str:
    q, e = card["quantized"], card["export"]
    lat = {(r["variant"], r["batch"]): r for r in card["latency"]["rows"]}

    def ms(variant: str, batch: int) -> str:
        r = lat.get((variant, batch))
        return "-" if r is None else f"{r['median_ms']:.3f}"

    def vs_eager(variant: str, batch: int) -> str:
        r = lat.get((variant, batch))
        return "-" if r is None or r["speedup_vs_eager"] is None else f"{r['speedup_vs_eager']:.1f}x"

    worst = max(p["max_abs_error"] for p in e["parity"])
    return (
        f"| {card['model']} | {card['architecture']['parameters']:,} | {100 * q['fp32_accuracy']:.2f}% | "
        f"{q['recipe']['name']} | {100 * q['accuracy']:.2f}% ({0.0 - q['drop_points']:+.2f}) | "
        f"{e['bytes'] / 1024:.0f} / {q['bytes'] / 1024:.0f} KiB | {worst:.1e} | "
        f"{ms('fp32', 1)} ({vs_eager('fp32', 1)}) | {ms('fp32', 64)} ({vs_eager('fp32', 64)}) | "
        f"{ms('quantized', 64)} ({vs_eager('quantized', 64)}) |"
    )


def table(models_dir: Path) -> str:
    cards = [json.loads(p.read_text()) for p in sorted(models_dir.glob("*/card.json"))]
    from edgenn import zoo

    order = {name: i for i, name in enumerate(zoo.names())}
    cards.sort(key=lambda c: order.get(c["model"], len(order)))
    cpu = cards[0]["latency"]["cpu"] if cards else "?"
    head = [
        f"Test split of digits (360 images); latency: median ms per call on {cpu}, 1 thread, onnxruntime CPU",
        "provider, with the speed-up over eager PyTorch measured in the same run.",
        "",
        "| model | params | fp32 acc | quantized recipe | quantized acc (points) | fp32 / quantized size "
        "| parity max abs | fp32 batch 1 ms (vs eager) | fp32 batch 64 ms (vs eager) "
        "| quantized batch 64 ms (vs eager) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + [_row(c) for c in cards])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="only check that the README is up to date")
    args = parser.parse_args()
    text = args.readme.read_text()
    if START not in text or END not in text:
        print(f"{args.readme}: markers {START!r} / {END!r} not found", file=sys.stderr)
        return 2
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    updated = f"{before}{START}\n{table(args.models_dir)}\n{END}{after}"
    if args.check:
        if updated != text:
            print("README.md's reference table is out of date: run python tools/reference_table.py", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
