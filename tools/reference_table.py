#!/usr/bin/env python3
"""Write the README's reference results table from the model cards in models/*/card.json.

python tools/reference_table.py            # rewrite the table in README.md
python tools/reference_table.py --check    # exit 1 if README.md is out of date

It writes two tables: the zoo's figures from the model cards, and tools/frontier.py's figures (tuned
against what a user would run instead) from models/frontier.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgenn.card import Card

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- reference-results:start (tools/reference_table.py writes this table) -->"
END = "<!-- reference-results:end -->"
FRONTIER_START = "<!-- frontier:start (tools/reference_table.py writes this table from models/frontier.json) -->"
FRONTIER_END = "<!-- frontier:end -->"


def _row(card: Card) -> str:
    q, e, lat = card.quantized, card.export, card.latency

    def ms(variant: str, batch: int) -> str:
        r = lat.row(variant, batch)
        return "-" if r is None else f"{r.median_ms:.3f}"

    def vs_eager(variant: str, batch: int) -> str:
        r = lat.row(variant, batch)
        return "-" if r is None or r.speedup_vs_eager is None else f"{r.speedup_vs_eager:.1f}x"

    def tuned(batch: int) -> str:
        point = card.tuned.point(1, batch) if card.tuned else None
        if point is None or point.speedup is None:
            return "-"
        return f"{point.choice} {point.speedup:.2f}x"

    return (
        f"| {card.model} | {card.parameters:,} | {100 * q.fp32_accuracy:.2f}% | "
        f"{q.recipe_name} | {100 * q.accuracy:.2f}% ({0.0 - q.drop_points:+.2f}) | "
        f"{e.bytes / 1024:.0f} / {q.bytes / 1024:.0f} KiB | {e.worst_max_abs_error:.1e} | "
        f"{ms('fp32', 1)} ({vs_eager('fp32', 1)}) | {ms('fp32', 64)} ({vs_eager('fp32', 64)}) | "
        f"{ms('quantized', 64)} ({vs_eager('quantized', 64)}) | {tuned(1)} | {tuned(64)} |"
    )


def table(models_dir: Path) -> str:
    from edgenn import zoo

    cards = [Card.load(p) for p in sorted(models_dir.glob("*/card.json"))]
    order = {name: i for i, name in enumerate(zoo.names())}
    cards.sort(key=lambda c: order.get(c.model, len(order)))
    cpu = cards[0].latency.cpu if cards else "?"
    # the CPU flags that decide int8 and bf16 speed (AVX2 only, or AVX-512 with VNNI) from the tuned folder
    deploy = models_dir / cards[0].model / "deploy" / "deploy.json" if cards else None
    if deploy is not None and deploy.is_file():
        flags = json.loads(deploy.read_text()).get("machine", {}).get("cpu_flags", [])
        cpu = f"{cpu} ({' '.join(flags) or 'no AVX2'})"
    head = [
        f"Test split of digits (360 images); latency: median ms per call on {cpu}, 1 thread, onnxruntime CPU",
        "provider, with the speed-up over eager PyTorch measured in the same run. Tuned: what `edgenn tune` chose",
        "for 1 thread on that machine (models/<name>/deploy), with its paired speed-up over the plain fp32 file.",
        "",
        "| model | params | fp32 acc | quantized recipe | quantized acc (points) | fp32 / quantized size "
        "| parity max abs | fp32 batch 1 ms (vs eager) | fp32 batch 64 ms (vs eager) "
        "| quantized batch 64 ms (vs eager) | tuned batch 1 | tuned batch 64 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + [_row(c) for c in cards])


def frontier_table(path: Path) -> str:
    """tools/frontier.py's figures (its --json output): tuned against the best peer at every point."""
    if not path.is_file():
        return "(no models/frontier.json: run python tools/frontier.py --json models/frontier.json)"
    data = json.loads(path.read_text())
    env = data["environment"]
    libs = env["libraries"]
    head = [
        f"`python tools/frontier.py --json models/frontier.json` on {env['cpu_model']}, {env['cores']} cores, "
        f"{env['date'][:10]} (onnxruntime {libs.get('onnxruntime')}, openvino {libs.get('openvino', '-')}, "
        f"nncf {libs.get('nncf', '-')}): median ms per call, side by side in one interleaved run per point; "
        "tuned / best peer is paired per round, with its 95% interval (below 1: tuned is faster).",
        "",
        "| model | threads | batch | tuned | ort | edgenn-int8 | openvino | nncf-int8 | best peer "
        "| tuned / best [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for p in data["points"]:
        ms = p["median_ms"]

        def cell(name: str, ms: dict = ms) -> str:
            return "-" if ms.get(name) is None else f"{ms[name]:.4g}"

        r = p["ratio"]
        ratio = "-" if r is None else f"{r['median']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        rows.append(
            f"| {p['model']} | {p['threads']} | {p['batch']} | {cell('tuned')} | {cell('ort')} | "
            f"{cell('edgenn-int8')} | {cell('openvino')} | {cell('nncf-int8')} | {p['best_peer']} | {ratio} |"
        )
    return "\n".join(head + rows)


def _replace_block(text: str, start: str, end: str, body: str) -> str:
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{body}\n{end}{after}"


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
    updated = _replace_block(text, START, END, table(args.models_dir))
    if FRONTIER_START in updated and FRONTIER_END in updated:
        updated = _replace_block(
            updated, FRONTIER_START, FRONTIER_END, frontier_table(args.models_dir / "frontier.json")
        )
    if args.check:
        if updated != text:
            print("README.md's reference table is out of date: run python tools/reference_table.py", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
