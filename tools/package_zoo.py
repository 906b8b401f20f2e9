"""Package every committed zoo model in every format, verify each, and list what a reduced ORT build needs.

    python tools/package_zoo.py                       # the table, and the union of the zoo's operators
    python tools/package_zoo.py --readme README.md    # write the table between the README's markers
    python tools/package_zoo.py --union-config models/zoo.required_operators.config --json

For each model of models/: the fp32 file as a bundle, an ORT-format file (fixed style) and a Triton
repository; the quantized file (model.quant.onnx) in ORT format too; the tuned deployment (deploy/)
as a bundle. Each package is checked with
`edgenn verify` (and in onnxruntime-node where `npm ci --prefix tools/node` has installed it). The
operators every ORT file needs are merged into one `required_operators.config`: what a reduced
onnxruntime build (`build.py --include_ops_by_config`) must keep to run the whole zoo.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- packages:start (python tools/package_zoo.py --readme README.md writes this table) -->"
END = "<!-- packages:end -->"


def _node_ready() -> bool:
    return shutil.which("node") is not None and (ROOT / "tools" / "node" / "node_modules" / "onnxruntime-node").is_dir()


def _node_passes(folder: Path) -> bool | None:
    if not _node_ready():
        return None
    done = subprocess.run(
        ["node", str(ROOT / "tools" / "node" / "golden.mjs"), str(folder)], capture_output=True, text=True, timeout=300
    )
    return done.returncode == 0


def _size(path: Path) -> int:
    """A file's bytes, or a folder's (a deployment)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _union(configs: list[str]) -> list[str]:
    """Lines `domain;opset;Op1,Op2` of several operators configs, merged per (domain, opset)."""
    ops: dict[tuple[str, int], set[str]] = defaultdict(set)
    for text in configs:
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            domain, opset, names = line.split(";")
            ops[(domain, int(opset))].update(n for n in names.split(",") if n)
    return [f"{d};{o};{','.join(sorted(ops[(d, o)]))}" for d, o in sorted(ops)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--readme", type=Path, help="Write the table between the markers of this README.")
    parser.add_argument("--union-config", type=Path, help="Write the zoo's merged required_operators.config here.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from edgenn import zoo
    from edgenn.errors import EdgennError
    from edgenn.package import PackageOptions, package
    from edgenn.runtime.cpuinfo import cpu_model
    from edgenn.runtime.verify import verify_package

    names = [n for n in zoo.names() if (args.models_dir / n / "model.onnx").is_file()]
    rows, configs = [], []
    with tempfile.TemporaryDirectory(prefix="edgenn-package-zoo-") as work:
        for name in names:
            for file, fmt in (
                ("model.onnx", "bundle"),
                ("model.onnx", "ort"),
                ("model.quant.onnx", "ort"),
                ("model.onnx", "triton"),
                ("deploy", "bundle"),
            ):
                source = args.models_dir / name / file
                out = Path(work) / f"{name}-{file.replace('.', '-')}-{fmt}"
                print(f"{name}: {file} as {fmt}", file=sys.stderr)
                try:
                    result = package(source, out, PackageOptions(format=fmt, name=name))
                except EdgennError as exc:  # one model's failure is a row of the table, not the end of the run
                    rows.append({"model": name, "file": file, "format": fmt, "verified": False, "error": str(exc)})
                    continue
                report = verify_package(out)
                if fmt == "ort":
                    configs.append((out / result.manifest.ort["operators_config"]).read_text())
                outcomes = [o for c in report.cases for o in c.outputs]
                rows.append(
                    {
                        "model": name,
                        "file": file,
                        "format": fmt,
                        "model_file": result.manifest.model,
                        "model_kib": round(_size(out / result.manifest.model) / 1024, 1),
                        "source_kib": round(_size(source) / 1024, 1),
                        "package_kib": round(sum(b for _, b in result.sizes) / 1024, 1),
                        "operators": len(result.operators),
                        "verified": report.passed,
                        "error": "" if report.passed else (report.failures or ["no golden case"])[0],
                        "max_abs_error": max((o.max_abs_error for o in outcomes), default=None),
                        "batch1_ms": report.cases[0].median_ms if report.cases else None,
                        "node": _node_passes(out),
                    }
                )
    union = _union(configs)
    header = "# the operators every zoo model (fp32 and quantized) needs in ORT format, merged by tools/package_zoo.py"
    union_text = "\n".join([header, *union]) + "\n"
    if args.union_config:
        args.union_config.write_text(union_text)
    cpu = cpu_model()
    if args.json:
        print(json.dumps({"cpu": cpu, "packages": rows, "union": union}, indent=2))
    lines = [
        f"`python tools/package_zoo.py` on {cpu}: every committed zoo model packaged and verified "
        "(`edgenn verify`: hashes, load as the target loads it, golden outputs); Node.js: the same golden "
        "vectors in onnxruntime-node 1.31.1.",
        "",
        "| model | file | format | packaged model | source KiB | model KiB | package KiB | ORT operators "
        "| verified | golden max abs error | batch 1 ms | Node.js |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "model_file" not in r:
            lines.append(f"| {r['model']} | {r['file']} | {r['format']} | failed: {r['error']} |" + " |" * 8)
            continue
        node = "-" if r["node"] is None else ("yes" if r["node"] else "NO")
        lines.append(
            f"| {r['model']} | {r['file']} | {r['format']} | {r['model_file']} | {r['source_kib']} | {r['model_kib']} "
            f"| {r['package_kib']} | {r['operators'] or '-'} | {'yes' if r['verified'] else 'NO'} "
            f"| {r['max_abs_error']:.1e} | {r['batch1_ms']:.3f} | {node} |"
        )
    where = f" ({args.union_config.as_posix()}, {len(union_text)} bytes)" if args.union_config else ""
    lines += [
        "",
        f"The union of operators a reduced onnxruntime build needs for the whole zoo in ORT format{where}:",
        "",
    ]
    lines += ["```", *union, "```"]
    text = "\n".join(lines)
    if not args.json:
        print(text)
    if args.readme:
        readme = args.readme.read_text()
        if START not in readme or END not in readme:
            raise SystemExit(f"{args.readme} has no {START} ... {END} markers")
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        args.readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    if not all(r["verified"] for r in rows) or any(r["node"] is False for r in rows):
        raise SystemExit(3)


if __name__ == "__main__":
    main()
