"""Rendering results for people (aligned text tables) and machines (JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    """A plain aligned table; numbers right-aligned, text left-aligned."""
    body = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    numeric = [all(_is_number(r[i]) for r in body) and bool(body) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [title] if title else []
    out += [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    return "\n".join(out)


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in pairs)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_default) + "\n"


def percent(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.2e}"
        return f"{value:.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%x"))
        return True
    except ValueError:
        return text == "-"


def render_card(card: dict[str, Any]) -> str:
    """A model card (the dict `edgenn build` writes as card.json) as markdown."""
    t, e, q = card["training"], card["export"], card["quantized"]
    lines = [
        f"# {card['model']}",
        "",
        card["description"],
        "",
        "Built by `edgenn build`; every figure below was measured by that build.",
        "",
        "## Results",
        "",
        "| | fp32 (`model.onnx`) | quantized (`model.quant.onnx`) |",
        "|---|---|---|",
        f"| test accuracy | {percent(q['fp32_accuracy'])} | "
        f"{percent(q['accuracy'])} ({0.0 - q['drop_points']:+.2f} points) |",
        f"| file size | {e['bytes'] / 1024:.1f} KiB | {q['bytes'] / 1024:.1f} KiB ({100 * q['size_ratio']:.0f}%) |",
        f"| recipe | {e['exporter']} exporter, opset {e['opset']}, {e['nodes']} nodes | {q['recipe']['name']} |",
        "",
        f"Quantized vs fp32 on the test split: argmax agreement {percent(q['argmax_agreement'])}, "
        f"max abs output error {q['max_abs_error']:.3g}.",
    ]
    kept = [k for k in q["kept_float"]]
    if kept:
        lines += [
            "",
            "Kept in float: " + ", ".join(f"`{k['node']}` ({k['op_type']}, {k['reason']})" for k in kept) + ".",
        ]
    lines += [
        "",
        "## Parity of the export (eager PyTorch vs onnxruntime, real test digits)",
        "",
        "| case | max abs error | argmax agreement |",
        "|---|---|---|",
    ]
    lines += [f"| {p['case']} | {p['max_abs_error']:.3g} | {percent(p['argmax_agreement'])} |" for p in e["parity"]]
    lines += ["", "Dynamic dims: " + ", ".join(f"{k}: {', '.join(v)}" for k, v in e["dynamic_dims"].items()), ""]
    lat = card["latency"]
    lines += [
        f"## Latency ({lat['cpu']}, {lat['threads']} thread(s), onnxruntime CPU provider, medians)",
        "",
        "| variant | batch | median ms | p90 ms | samples/s | vs eager |",
        "|---|---|---|---|---|---|",
    ]
    for r in lat["rows"]:
        ratio = (
            "1 (baseline)"
            if r["variant"] == "eager"
            else ("-" if r["speedup_vs_eager"] is None else f"{r['speedup_vs_eager']:.2f}x")
        )
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['median_ms']:.4f} | {r['p90_ms']:.4f} | "
            f"{r['throughput_per_s']:,.0f} | {ratio} |"
        )
    lines += [
        "",
        "## Training",
        "",
        f"{card['data']['dataset']}; {card['data']['split']}.",
        f"Test accuracy {percent(t['test_accuracy'])} (validation {percent(t['val_accuracy'])}, best epoch "
        f"{t['best_epoch']} of {t['config']['epochs']}), {t['train_seconds']:.1f} s of training. Config: "
        + ", ".join(f"{k} {v}" for k, v in t["config"].items() if k != "model")
        + ".",
        "",
        "## Architecture",
        "",
        f"{card['architecture']['parameters']:,} parameters.",
        "",
        "| layer | type | output shape | parameters |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['type']} | {'x'.join(map(str, r['output_shape']))} | {r['parameters']:,} |"
        for r in card["architecture"]["layers"]
    ]
    lines += [
        "",
        "## Rebuild",
        "",
        "```bash",
        *card["rebuild"],
        "```",
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in card["versions"].items()),
        "",
    ]
    return "\n".join(lines)
