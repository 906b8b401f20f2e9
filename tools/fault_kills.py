"""Kill every writing command with SIGKILL at random moments and count the temporary files left behind.

    python tools/fault_kills.py                          # 20 kills of each writing command, then the table
    python tools/fault_kills.py --kills 3 --commands export,quantize --json

For each command: one full run measures how long it takes; then, `--kills` times, the command is started
in one output folder, killed with SIGKILL after a random delay within that time (seeded), and run again
to completion (the next run, which must clear what the killed one left). What is left is counted after
the kill and after the next run: hidden temporary files (`.*.tmp`) and staging folders in the output
folder, scratch folders in edgenn's temp area (`$TMPDIR/edgenn`), and anything else in TMPDIR (where
libraries such as onnxruntime's quantizer make their own; onnxruntime's session id file `.ses` is kept
on purpose and not counted). The issue's figure: 0 left after the next run, in 20 kills each.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "models" / "mlp"
ORT_SESSION_FILE = ".ses"  # onnxruntime's own, reused run to run

# Each writing command on the small committed MLP (MLP: models/mlp), writing under OUT; kept short.
COMMANDS = {
    "export": "export mlp --weights MLP/model.safetensors -o OUT/m.onnx --batch 1",
    "quantize": "quantize MLP/model.onnx -o OUT/q.onnx --mode dynamic",
    "train": "train mlp --epochs 2 -o OUT/run",
    "tune": "tune MLP/model.onnx -o OUT/deploy --batch 1 --threads 1 --recipes dynamic --time-budget 21 --force",
    "package": "package MLP/model.onnx -o OUT/pkg --format ort --force",
    "compare": "compare MLP/model.onnx MLP/model.quant.onnx --layerwise --plot OUT/layers.png --json-out OUT/c.json",
    "bench": "bench MLP/model.onnx --runs 50 --rounds 5 --json-out OUT/bench.json --csv OUT/bench.csv",
    "build": "build mlp --models-dir OUT",  # minutes a run: only when asked for
}
DEFAULT_COMMANDS = ("export", "quantize", "train", "tune", "package", "compare", "bench")


@dataclass
class Row:
    command: str
    full_seconds: float
    kills: int = 0  # runs that were still going when the kill came
    finished_first: int = 0  # runs that ended before their delay was up
    left_after_kill: int = 0  # temporary files and folders the kills left (summed over kills)
    left_after_next: int = 0  # what was still there after each next run (summed): the figure, 0
    next_failed: int = 0  # next runs that did not succeed
    examples: list[str] = field(default_factory=list)
    error: str | None = None  # the full run failed: nothing was measured


def leftovers(out: Path, tmpdir: Path) -> list[str]:
    """Temporary files and folders: hidden ones in the output folder (and one level down, where a command
    writes a folder), scratch folders in edgenn's temp area, anything else in TMPDIR."""
    found = []
    for folder in (out, *(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))):
        found += [str(p.relative_to(out.parent)) for p in folder.iterdir() if _temporary(p.name)]
    area = tmpdir / "edgenn"
    if area.is_dir():
        found += [f"TMPDIR/edgenn/{p.name}" for p in area.iterdir()]
    found += [f"TMPDIR/{p.name}" for p in tmpdir.iterdir() if p.name not in ("edgenn", ORT_SESSION_FILE)]
    return found


def _temporary(name: str) -> bool:
    return name.startswith(".") and (name.endswith(".tmp") or ".edgenn-staging-" in name or ".edgenn-old-" in name)


def _command(name: str, out: Path) -> list[str]:
    args = [a.replace("MLP", str(MLP)).replace("OUT", str(out)) for a in COMMANDS[name].split()]
    return [sys.executable, "-c", "from edgenn.entry import main; main()", *args]


def _env(tmpdir: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONWARNINGS": "ignore"}


def _run(name: str, out: Path, tmpdir: Path, timeout: float) -> tuple[bool, float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        _command(name, out), cwd=ROOT, env=_env(tmpdir), capture_output=True, text=True, timeout=timeout
    )
    return done.returncode == 0, time.perf_counter() - started, done.stderr[-400:]


def _killed_run(name: str, out: Path, tmpdir: Path, delay: float) -> bool:
    """Start the command, SIGKILL it after `delay` seconds; whether it was still running then."""
    child = subprocess.Popen(
        _command(name, out), cwd=ROOT, env=_env(tmpdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        child.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        return True


def measure(name: str, kills: int, rng: random.Random, work: Path, timeout: float, log) -> Row:
    out, tmpdir = work / name / "out", work / name / "tmp"
    out.mkdir(parents=True)
    tmpdir.mkdir()
    ok, seconds, err = _run(name, out, tmpdir, timeout)
    row = Row(name, round(seconds, 2))
    if not ok:
        row.error = (err.strip().splitlines() or ["failed"])[-1]
        log(f"{name}: the full run failed, nothing to measure: {row.error}")
        return row
    for i in range(kills):
        delay = rng.uniform(0.2, seconds)
        killed = _killed_run(name, out, tmpdir, delay)
        left = leftovers(out, tmpdir)
        row.kills += killed
        row.finished_first += not killed
        row.left_after_kill += len(left)
        ok, _, err = _run(name, out, tmpdir, timeout)
        row.next_failed += not ok
        still = leftovers(out, tmpdir)
        row.left_after_next += len(still)
        row.examples += [s for s in still if s not in row.examples][:3]
        outcome = "ok" if ok else "FAILED: " + (err.strip().splitlines() or ["?"])[-1]
        moment = "killed" if killed else "finished"
        log(
            f"{name} {i + 1}/{kills}: {moment} at {delay:.2f}s, {len(left)} left; next run {outcome}, {len(still)} left"
        )
    return row


def render(rows: list[Row]) -> str:
    header = ("command", "full run s", "kills", "ended first", "left by kills", "left after next run", "next failed")
    lines = [header] + [
        (
            r.command,
            f"{r.full_seconds:.1f}",
            str(r.kills),
            str(r.finished_first),
            str(r.left_after_kill),
            str(r.left_after_next),
            str(r.next_failed),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        if r.examples:
            text.append(f"{r.command}: left after the next run: {', '.join(r.examples)}")
        if r.error:
            text.append(f"{r.command}: not measured, its full run failed: {r.error}")
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per command [20]")
    parser.add_argument(
        "--commands", default=",".join(DEFAULT_COMMANDS), help=f"comma list of {', '.join(COMMANDS)} [all but build]"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays [0]")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a full run may take [900]")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    names = [n.strip() for n in args.commands.split(",") if n.strip()]
    unknown = [n for n in names if n not in COMMANDS]
    if unknown:
        parser.error(f"unknown command(s) {', '.join(unknown)}; choose from {', '.join(COMMANDS)}")
    rng = random.Random(args.seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="fault-kills-"))
    work.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        rows = [measure(name, args.kills, rng, work, args.timeout, log) for name in names]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"kills": args.kills, "seed": args.seed, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print(render(rows))
    sys.exit(1 if any(r.left_after_next or r.next_failed or r.error for r in rows) else 0)


if __name__ == "__main__":
    main()
