"""Rendering results for people (aligned text tables) and machines (JSON): one render_* per result type.

The primitives (table, key_values, to_json, percent, terminal tables) live in edgenn.tables and are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgenn.tables import key_values, percent, table, terminal_tables, to_json

__all__ = ["key_values", "percent", "table", "terminal_tables", "to_json"]


def render_card(card: Any) -> str:
    """A model card (edgenn.card.Card, what `edgenn build` writes as card.json) as markdown."""
    t, e, q = card.training, card.export, card.quantized
    lines = [
        f"# {card.model}",
        "",
        card.description,
        "",
        "Built by `edgenn build`; every figure below was measured by that build.",
        "",
        "## Results",
        "",
        "| | fp32 (`model.onnx`) | quantized (`model.quant.onnx`) |",
        "|---|---|---|",
        f"| test accuracy | {percent(q.fp32_accuracy)} | {percent(q.accuracy)} ({0.0 - q.drop_points:+.2f} points) |",
        f"| file size | {e.bytes / 1024:.1f} KiB | {q.bytes / 1024:.1f} KiB ({100 * q.size_ratio:.0f}%) |",
        f"| recipe | {e.exporter} exporter, opset {e.opset}, {e.nodes} nodes | {q.recipe_name} |",
        "",
        f"Quantized vs fp32 on the test split: argmax agreement {percent(q.argmax_agreement)}, "
        f"max abs output error {q.max_abs_error:.3g}.",
    ]
    if q.kept_float:
        lines += [
            "",
            "Kept in float: " + ", ".join(f"`{k['node']}` ({k['op_type']}, {k['reason']})" for k in q.kept_float) + ".",
        ]
    lines += [
        "",
        "## Parity of the export (eager PyTorch vs onnxruntime, real test digits)",
        "",
        "| case | max abs error | argmax agreement |",
        "|---|---|---|",
    ]
    lines += [f"| {p.case} | {p.max_abs_error:.3g} | {percent(p.argmax_agreement)} |" for p in e.parity]
    lines += ["", "Dynamic dims: " + ", ".join(f"{k}: {', '.join(v)}" for k, v in e.dynamic_dims.items()), ""]
    lat = card.latency
    lines += [
        f"## Latency ({lat.cpu}, {lat.threads} thread(s), onnxruntime CPU provider, medians)",
        "",
        "| variant | batch | median ms | p90 ms | samples/s | vs eager |",
        "|---|---|---|---|---|---|",
    ]
    for r in lat.rows:
        ratio = (
            "1 (baseline)"
            if r.variant == "eager"
            else ("-" if r.speedup_vs_eager is None else f"{r.speedup_vs_eager:.2f}x")
        )
        lines.append(
            f"| {r.variant} | {r.batch} | {r.median_ms:.4f} | {r.p90_ms:.4f} | {r.throughput_per_s:,.0f} | {ratio} |"
        )
    if card.tuned is not None:
        lines += _tuned_lines(card.tuned)
    lines += [
        "",
        "## Training",
        "",
        f"{card.data['dataset']}; {card.data['split']}.",
        f"Test accuracy {percent(t.test_accuracy)} (validation {percent(t.val_accuracy)}, best epoch "
        f"{t.best_epoch} of {t.config['epochs']}), {t.train_seconds:.1f} s of training. Config: "
        + ", ".join(f"{k} {v}" for k, v in t.config.items() if k != "model")
        + ".",
        "",
        "## Architecture",
        "",
        f"{card.parameters:,} parameters.",
        "",
        "| layer | type | output shape | parameters |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['type']} | {'x'.join(map(str, r['output_shape']))} | {r['parameters']:,} |"
        for r in card.architecture["layers"]
    ]
    lines += [
        "",
        "## Rebuild",
        "",
        "```bash",
        *card.rebuild,
        "```",
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in card.versions.items()),
        "",
    ]
    return "\n".join(lines)


def _tuned_lines(tuned: Any) -> list[str]:
    lines = [
        "",
        f"## Tuned deployment (`{tuned.folder}/`, by `edgenn tune` on {tuned.cpu}, {tuned.cores} cores)",
        "",
        f'`Model("{tuned.folder}")` runs, per batch size, the fastest candidate that held the accuracy budget on '
        "the validation split, timed side by side with the plain fp32 file on onnxruntime's CPU provider "
        "(plain ORT) and, where it runs, onnxruntime's OpenVINO provider. What is fastest differs by CPU: on "
        "another machine, re-run `edgenn tune`.",
        "",
        "| threads | batch | tuned runs | tuned ms | plain ORT ms | OpenVINO ms | speed-up [95% CI] | test acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pt in tuned.points:
        ci = "-" if pt.speedup is None else f"{pt.speedup:.2f}x [{pt.speedup_low:.2f}, {pt.speedup_high:.2f}]"
        lines.append(
            f"| {pt.threads} | {pt.batch} | {pt.choice} | {_ms4(pt.choice_ms)} | {_ms4(pt.ort_ms)} | "
            f"{_ms4(pt.openvino_ms)} | {ci} | {percent(pt.test_accuracy)} |"
        )
    lines += [""] + [f"Note: {n}." for n in tuned.notes]
    if not any(p.startswith("openvino") for p in tuned.providers):
        lines.append("OpenVINO's provider did not run on this machine, so it was not among the candidates.")
    return lines


def _ms4(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def render_export(result: Any) -> str:
    v = result.validation
    head = key_values(
        [
            ("source", result.source),
            (
                "file",
                f"{result.path} ({result.file_bytes / 1024:.1f} KiB, one self-contained file)"
                if result.path
                else "none written",
            ),
            ("exporter", result.exporter_note),
            ("opset", result.opset),
            ("inputs", ", ".join(str(s) for s in result.inputs)),
            ("outputs", ", ".join(str(s) for s in result.outputs)),
            ("nodes", result.node_count),
            ("time", f"export {result.export_seconds:.2f} s, validate {result.validate_seconds:.2f} s"),
        ]
    )
    stages = table(
        ["stage", "ok", "seconds", "detail"],
        [(s.name, "yes" if s.passed else "NO", f"{s.seconds:.3f}", s.detail) for s in v.stages],
    )
    parity = table(
        ["case", "output", "max abs", "max rel", "outside tol", "argmax agree", "ok"],
        [
            (
                label,
                o.name,
                o.max_abs_error,
                o.max_rel_error,
                percent(o.mismatch_fraction),
                percent(o.argmax_agreement),
                "yes" if o.passed else "NO",
            )
            for label, p in (*v.parity, *v.provider_parity)
            for o in p.outputs
        ],
    )
    parts = [head, "", stages, "", parity]
    parts += [f"tolerance on {n}" for n in v.notes]
    parts += [f"skipped: {s}" for s in v.skipped]
    parts.append("\nvalid" if result.passed else f"\nINVALID: {v.first_failure}")
    return "\n".join(parts)


def render_quantize(result: Any) -> str:
    from edgenn.evaluate import INT8_COMPUTE_OPS

    e = result.evaluation
    k = e.kernels
    title = f"{result.source} -> {result.output} ({result.recipe.name})"
    if e.providers and e.providers[0].provider != "cpu":
        title += f", measured on {e.providers[0].provider}"
    rows: list[tuple[Any, ...]] = []
    if e.labelled:
        rows.append(
            (
                f"accuracy ({e.data}, {e.samples})",
                percent(e.fp32_accuracy),
                percent(e.quantized_accuracy),
                f"{100 * (e.quantized_accuracy - e.fp32_accuracy):+.2f} points",
            )
        )
    else:
        rows.append((f"data ({e.samples} samples, no labels)", "", e.data, ""))
    if e.argmax_agreement is not None:
        rows.append(("argmax agreement", "", percent(e.argmax_agreement), ""))
    rows += [
        ("max abs output error", "", f"{e.max_abs_error:.3g}", ""),
        ("output error (of fp32 scale)", "", f"{e.output_error:.3g}", ""),
        ("SQNR", "", "inf" if e.sqnr_db == float("inf") else f"{e.sqnr_db:.1f} dB", ""),
        ("cosine similarity", "", f"{e.cosine:.6f}", ""),
    ]
    rows += [
        (
            "file size",
            f"{e.fp32_bytes / 1024:.1f} KiB",
            f"{e.quantized_bytes / 1024:.1f} KiB",
            f"{100 * e.size_ratio:.1f}%",
        ),
    ]
    rows += [
        (
            f"latency, batch {lat.batch_size}",
            f"{lat.fp32_ms:.3f} ms",
            f"{lat.quantized_ms:.3f} ms",
            f"{lat.speedup:.2f}x throughput",
        )
        for lat in e.latency
    ]
    ops = ", ".join(f"{op} {n}" for op, n in k.op_counts if op in INT8_COMPUTE_OPS)
    if result.recipe.mode == "fp16":
        rows.append(("nodes computing in fp16", "", f"{k.fp16_nodes} of {k.fp16_candidates}", ""))
    else:
        rows.append(("int8 compute kernels run", "", str(k.int8_compute), ops))
    rows.append(("float compute kernels run", "", str(k.float_compute), ""))
    parts = [table(["", "fp32", result.recipe.name, "change"], rows, title=title)]
    if len(e.providers) > 1:
        batches = [lat.batch_size for lat in e.providers[0].latency]
        parts += [
            "",
            table(
                ["provider", "fp32 acc", "quantized acc", "drop"]
                + [f"b{b} fp32 / quantized ms" for b in batches]
                + [f"b{b} speedup" for b in batches]
                + ["quantized model ran on"],
                [
                    (
                        p.provider,
                        percent(p.fp32_accuracy),
                        percent(p.quantized_accuracy),
                        _points(p.drop_points),
                        *(f"{lat.fp32_ms:.3f} / {lat.quantized_ms:.3f}" for lat in p.latency),
                        *(f"{lat.speedup:.2f}x" for lat in p.latency),
                        p.quantized_placement + (f" ({p.note})" if p.note else ""),
                    )
                    for p in e.providers
                ],
                title="on every provider asked, side by side (kernel counts above are the CPU provider's)",
            ),
        ]
    if result.kept_float:
        parts += [
            "",
            table(
                ["kept in float", "op", "why", "own error", "drop after"],
                [
                    (
                        kf.node,
                        kf.op_type,
                        kf.reason,
                        _figure(kf.local_error),
                        _points(kf.drop_after_points),
                    )
                    for kf in result.kept_float
                ],
            ),
        ]
    if result.sensitivity:
        shown = result.sensitivity[:10]
        parts += [
            "",
            table(
                ["node", "op", "module", "own error", "carried error"],
                [
                    (
                        s.node,
                        s.op_type,
                        "?" if s.module is None else (s.module or "(top)"),
                        _figure(s.local_error),
                        _figure(s.carried_error),
                    )
                    for s in shown
                ],
                title="sensitivity: each quantized node's layer, its own error relative to its range (compare "
                "--layerwise's local figure), the order nodes were kept in float",
            ),
        ]
    if result.candidates:
        parts += [
            "",
            table(
                [
                    "recipe tried",
                    f"drop ({_short(result.selection_data)})",
                    "speedup",
                    "int8 kernels",
                    "within budget",
                    "chosen",
                    "note",
                ],
                [
                    (
                        c.recipe.name,
                        _points(c.drop_points)
                        if c.drop_points is not None or c.output_error is None
                        else f"err {c.output_error:.3g}",
                        "-" if c.speedup is None else f"{c.speedup:.2f}x",
                        c.int8_compute,
                        "yes" if c.within_budget else "no",
                        "yes" if c.chosen else "",
                        c.note,
                    )
                    for c in result.candidates
                ],
            ),
        ]
    if result.calibration:
        parts.append(f"\ncalibration: {result.calibration} ({result.recipe.method})")
    parts += [f"note: {n}" for n in result.notes]
    return "\n".join(parts)


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _short(data: str | None) -> str:
    return (data or "").replace("digits ", "").replace(" split", "")


def render_bench(report: Any) -> str:
    many_threads = len(report.options.threads) > 1 or report.options.threads != (1,)
    baselines = list(dict.fromkeys(r.baseline for r in report.results if r.baseline))
    rows = []
    for r in report.results:
        lat = r.latency_ms
        if r.speedup is None:
            speed = "baseline"
        else:
            speed = f"{r.speedup.median:.2f}x [{r.speedup.ci_low:.2f}-{r.speedup.ci_high:.2f}]"
            if r.speedup.ci_level < 0.95:  # too few rounds for a 95% interval: say what it is
                speed += f" {100 * r.speedup.ci_level:.0f}%"
            if len(baselines) > 1:
                speed += f" vs {r.baseline}"
        memory = "-" if r.session_memory_mb is None else f"{r.session_memory_mb:.1f} / {r.run_memory_mb:.1f}"
        rows.append(
            (
                r.variant,
                r.provider
                + ("" if r.precision == "f32" else f" {r.precision}")
                + (f" t{r.threads}" if many_threads else ""),
                r.batch,
                _ms(lat.median),
                _ms(lat.p90),
                _ms(lat.p99),
                f"{_ms(lat.mean)} ± {_ms(lat.std)}",
                _ms(r.cpu_ms) + ("*" if r.waited_for_cpu else ""),
                f"{r.throughput:,.0f}",
                speed,
                f"{1e3 * r.session_seconds:.1f}",
                memory,
            )
        )
    env = report.environment
    parts = [
        table(
            [
                "variant",
                "provider",
                "batch",
                "median ms",
                "p90 ms",
                "p99 ms",
                "mean ± std ms",
                "cpu ms",
                "samples/s",
                "speedup [95% CI]",
                "session ms",
                "memory MB (session / run)",
            ],
            rows,
        )
    ]
    placements = dict.fromkeys(
        f"{r.label}: {r.placement}"
        for r in report.results
        if r.provider not in ("cpu", "torch") or r.precision != "f32"
    )
    parts += [f"ran on {p}" for p in placements]
    parts += [f"skipped {_where(s)}: {s.reason}" for s in report.skipped]
    parts += [
        "",
        key_values(
            [
                ("speedup", f"against {', '.join(baselines) or 'the first variant'}, paired per round (>1: faster)"),
                ("cpu", f"{env.cpu_model}; {' '.join(env.cpu_flags) or 'no AVX2/AVX-512/VNNI flags'}"),
                (
                    "cores",
                    f"{env.usable_cores} usable of {env.logical_cores} logical"
                    + (f", {env.physical_cores} physical" if env.physical_cores else ""),
                ),
                (
                    "threads",
                    ", ".join(map(str, report.options.threads))
                    + "".join(f"; {k}={v}" for k, v in env.thread_variables.items()),
                ),
                (
                    "versions",
                    ", ".join(f"{k} {env.versions[k]}" for k in ("onnxruntime", "torch", "numpy") if k in env.versions),
                ),
                ("providers", ", ".join(env.providers_available)),
                (
                    "runs",
                    f"{report.results[0].runs} timed calls in {report.results[0].rounds} rounds per point "
                    f"(first variant), after {report.options.warmup} warm-up calls",
                ),
                ("load", _load(env.load_average, report.load_average_end, env.usable_cores)),
                (
                    "memory",
                    "peak host RSS growth while creating the session / over the warm-up calls (Linux VmHWM)"
                    if report.results[0].session_memory_mb is not None
                    else report.memory_method,
                ),
            ]
        ),
    ]
    waited = [r for r in report.results if r.waited_for_cpu]
    if waited:
        parts.append(
            f"warning: * marks {len(waited)} one-thread runs whose mean wall time exceeds their CPU time by "
            "20% or more: their calls waited for a core (another program was running). Medians and paired "
            "speedups hold up best, means and p99 least; rerun on a quiet machine"
        )
    for profile in report.profiles:
        parts += ["", render_profile(profile)]
    for attribution in report.attributions:
        parts += ["", render_attribution(attribution)]
    return "\n".join(parts)


def render_profile(profile: Any, shown: int = 8) -> str:
    """edgenn.profile.Profile: time by op type and the slowest nodes, the shares, and the known causes."""
    title = (
        f"profile: {profile.model} on {profile.provider}, batch {profile.batch} ({profile.source}, median of "
        f"{profile.runs} runs): {profile.total_ms:.3f} ms in nodes"
    )
    every_op = profile.by_op()
    ops = [(op, n, ms, percent(share, 1)) for op, n, ms, share in every_op[:shown]]
    by_op = table(["op", "nodes", "ms", "share"], ops, title) + _more(len(every_op) - shown, "op types")
    slowest = sorted(profile.nodes, key=lambda n: -n.ms)[:shown]
    nodes = table(
        ["node", "op", "inputs", "kind", "ms", "share"],
        [(n.name, n.op, "/".join(n.input_types[:1]) or "-", n.kind, n.ms, percent(n.share, 1)) for n in slowest],
    ) + _more(len(profile.nodes) - shown, "nodes")
    shares = profile.shares()
    lines = [
        by_op,
        nodes,
        f"layout reorders {percent(shares['reorder'], 1)}, quantize/dequantize {percent(shares['quantize'], 1)}, "
        f"float compute in a quantized model {percent(shares['float-in-int8'], 1)}",
    ]
    lines += [f"why: {e}" for e in profile.explanations()]
    lines += [f"note: {n}" for n in profile.notes]
    return "\n".join(lines)


def render_attribution(attribution: Any, shown: int = 8) -> str:
    """edgenn.profile.Attribution: where the time between two models goes, largest differences first."""
    sign = "slower" if attribution.delta_ms > 0 else "faster"
    title = (
        f"{attribution.candidate} against {attribution.baseline} on {attribution.provider}, batch "
        f"{attribution.batch}: {abs(attribution.delta_ms):.3f} ms {sign} in nodes, by where it goes"
    )
    rows = [(r.what, r.baseline_ms, r.candidate_ms, r.delta_ms, r.explanation or "-") for r in attribution.rows[:shown]]
    headers = ["nodes (baseline / candidate)", "baseline ms", "candidate ms", "difference ms", "why"]
    return table(headers, rows, title) + _more(len(attribution.rows) - shown, "rows")


def _figure(value: float | None) -> str:
    """A relative error in three significant digits, or "-" where none was measured."""
    return "-" if value is None else f"{value:.3g}"


def _more(hidden: int, what: str) -> str:
    """The line under a table cut short: how much more --json has."""
    return f"\n... and {hidden} more {what} (--json has them all)" if hidden > 0 else ""


def _load(start: Any, end: Any, cores: int) -> str:
    if start is None:
        return "unknown"
    text = f"{start[0]} at the start, {end[0] if end else '?'} at the end, on {cores} cores"
    return text + (
        " (busy: other programs compete for the cores)" if max(start[0], end[0] if end else 0) > cores else ""
    )


def _ms(value: float) -> str:
    return f"{value:.4f}" if value < 1 else f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _where(s: Any) -> str:
    parts = [s.variant if s.variant != "*" else "all variants", s.provider]
    parts += [f"threads {s.threads}"] if s.threads is not None else []
    parts += [f"batch {s.batch}"] if s.batch is not None else []
    return " / ".join(parts)


def render_tune(result: Any) -> str:
    """edgenn tune's result: every candidate's accuracy and speed, then what each batch range runs."""
    from edgenn.runtime.deploy import range_text

    d = result.deployment
    points = [(p.threads, b) for p in d.profiles for b in d.options.get("batches", ())]
    headers = ["candidate", "sel. acc", "test acc", "drop"] + [f"t{t} b{b} ms (x)" for t, b in points] + ["shipped"]
    rows = []
    for c in d.candidates:
        cells: list[Any] = [c.id, percent(c.selection_accuracy), percent(c.test_accuracy), _points(c.drop_points)]
        for threads, batch in points:
            t = c.timing(threads, batch)
            if t is None:
                cells.append("-")
            else:
                mark = "" if t.stage == "final" else "~"
                cells.append(f"{mark}{t.median_ms:.3f} ({t.speedup:.2f}x)")
        cells.append("yes" if c.shipped else (c.note or "no"))
        rows.append(cells)
    machine = f"{d.machine.cpu_model}, {d.machine.cores} cores"
    out = [
        table(headers, rows, title=f"{d.source.get('file', '?')} tuned on {machine} -> {result.folder}"),
        "~: quick pass only; (x): paired speedup against fp32@cpu, measured side by side",
    ]
    route_rows = [
        (p.threads, range_text(r), r.choice, ", ".join(r.ranking[1:]) or "-") for p in d.profiles for r in p.routes
    ]
    out.append(table(["threads", "batch", "runs", "falls back to"], route_rows, title="\nroutes (deploy.json)"))
    budget = d.budget
    where = f"selection: {budget.get('selection')}; reported: {budget.get('report')}"
    out.append(f"\n{where}")
    out += [f"note: {n}" for n in d.notes]
    out += [f"skipped {s}" for s in result.skipped]
    for profile in result.node_profiles:
        out += ["", render_profile(profile, shown=5)]
    out.append(f"{result.seconds:.0f} s")
    return "\n".join(out)


def outputs_json(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Raw outputs for machines: shape, dtype and every value."""
    return {
        name: {"shape": list(array.shape), "dtype": str(array.dtype), "values": array.tolist()}
        for name, array in outputs.items()
    }


def render_outputs(outputs: Mapping[str, Any], title: str = "", shown: int = 6) -> str:
    """Raw outputs for people: shape, dtype, range and the first values of each."""
    import numpy as np

    rows = []
    for name, array in outputs.items():
        flat = np.asarray(array).ravel()
        numeric = flat.size and flat.dtype.kind in "biuf"
        first = ", ".join(f"{v:.4g}" if flat.dtype.kind == "f" else str(v) for v in flat[:shown])
        rows.append(
            (
                name,
                "x".join(map(str, array.shape)) or "scalar",
                str(array.dtype),
                f"{flat.min():.4g}" if numeric else "-",
                f"{flat.max():.4g}" if numeric else "-",
                first + (", ..." if flat.size > shown else ""),
            )
        )
    return table(["output", "shape", "dtype", "min", "max", "values"], rows, title=title)


def render_compare(report: Any) -> str:
    """edgenn.compare.CompareReport: per output, then (with --layerwise) per layer and the first departure."""
    rows = [
        (
            o.name,
            "x".join(map(str, o.shape)),
            o.error.max_abs_error,
            o.max_elementwise_rel,
            o.error.relative,
            o.error.sqnr_db if o.error.sqnr_db != float("inf") else "inf",
            f"{o.error.cosine:.6f}",
            percent(o.argmax_agreement),
            "yes" if o.passed else "NO",
        )
        for o in report.outputs
    ]
    title = f"{report.candidate} against {report.reference} on {report.inputs} (batch {report.batch})"
    headers = ["output", "shape", "max abs", "max rel", "rel to range", "SQNR dB", "cosine", "argmax agree", "within"]
    parts = [table(headers, rows, title=title) + f"\nwithin: {report.criterion}"]
    lw = report.layerwise
    if lw is not None:
        parts.append(render_layerwise(lw))
    parts.extend(f"note: {n}" for n in report.notes)
    return "\n\n".join(parts)


def render_layerwise(lw: Any) -> str:
    def figures(error: Any) -> tuple[Any, Any]:
        if error is None:
            return "-", "-"
        return error.relative, ("inf" if error.sqnr_db == float("inf") else error.sqnr_db)

    rows = []
    for layer in lw.layers:
        carried, local = figures(layer.carried), figures(layer.local)
        module = "?" if layer.module is None else (layer.module or "(top)")
        rows.append(
            (
                layer.index,
                module,
                layer.op,
                layer.tensor,
                layer.carried.max_abs_error if layer.carried else "-",
                *carried,
                f"{layer.carried.cosine:.6f}" if layer.carried else "-",
                *local,
                "<< departs" if layer.departs else layer.note,
            )
        )
    headers = [
        "#",
        "module",
        "op",
        "tensor",
        "max abs",
        "rel to range",
        "SQNR dB",
        "cosine",
        "local rel to range",
        "local SQNR dB",
        "verdict",
    ]
    title = (
        f"layer by layer ({lw.matched_by}s matched; rel to range = max |error| / max |reference|; local = the layer "
        f"on the reference's inputs, its own error); tolerance {lw.tolerance:g} of the range"
    )
    lines = [table(headers, rows, title=title), lw.departure_line()]
    lines += [f"hidden: {h}" for h in lw.hidden]
    lines += [f"note: {n}" for n in lw.notes]
    return "\n".join(lines)


def render_package(result: Any) -> str:
    """edgenn.package.PackageResult: the files with their sizes, the golden cases, the operators of an ORT build."""
    m = result.manifest
    pairs = [
        ("package", f"{result.folder} ({m.kind}: {m.model}, {m.model_format})"),
        ("source", m.source.get("path", "-") + (f" ({m.source['candidate']})" if m.source.get("candidate") else "")),
        ("precision", m.precision),
        ("inputs", ", ".join(map(str, m.inputs))),
        ("outputs", ", ".join(map(str, m.outputs))),
        ("golden inputs", m.source.get("golden_inputs", "-")),
    ]
    if m.ort:
        pairs.append(("ORT", m.ort["note"]))
    if m.triton:
        t = m.triton
        pairs.append(
            (
                "Triton",
                f"model {t['name']}, max_batch_size {t['max_batch_size']}, {t['instances']} instance(s), "
                f"threads {t['threads'] or 'default'}, accelerator {t['accelerator'] or 'none'}",
            )
        )
    pairs.append(("time", f"{result.seconds:.2f} s"))
    files = table(
        ["file", "KiB", "sha256"],
        [(p, f"{b / 1024:.1f}", dict(m.files).get(p, "(itself)")[:16]) for p, b in result.sizes],
    )
    cases = table(
        ["golden case", "batch", "tolerance", "candidate"],
        [(c.name, c.batch, c.tolerance.describe(), c.candidate or "-") for c in m.golden],
    )
    lines = [key_values(pairs), "", files, "", cases]
    if result.operators:
        lines += ["", f"operators a reduced onnxruntime build needs ({m.ort['operators_config']}):"]
        lines += [f"  {line}" for line in result.operators]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(
        f"verified here: {len(result.verify.cases)} golden case(s) pass; edgenn verify {result.folder} on the target"
    )
    return "\n".join(lines)
