#!/usr/bin/env python3
"""Export every zoo model and print the figures of issue 3's table.

    python tools/export_zoo.py [--models-dir models] [--out /tmp/edgenn-export]

Weights come from models/<name>/model.safetensors (what `edgenn build` committed); a model
without them is trained first with default settings.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edgenn import zoo
from edgenn.export import export_source
from edgenn.report import table


def weights_for(name: str, models_dir: Path, scratch: Path) -> Path | None:
    if not zoo.entry(name).trainable:
        return None
    committed = models_dir / name / "model.safetensors"
    if committed.is_file():
        return committed
    from edgenn.train import TrainConfig, train

    return train(TrainConfig.for_model(name), scratch / name).weights_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="edgenn-export-")))
    args = parser.parse_args()
    rows = []
    for name in zoo.names():
        weights = weights_for(name, args.models_dir, args.out)
        started = time.perf_counter()
        result = export_source(name, args.out / f"{name}.onnx", weights=weights)
        seconds = time.perf_counter() - started
        rows.append(
            (
                name,
                result.exporter,
                result.opset,
                result.node_count,
                f"{result.file_bytes / 1024:.1f} KiB",
                f"{seconds:.2f}",
                f"{result.validation.worst_max_abs_error:.2e}",
                "yes" if result.passed else "NO",
            )
        )
    print(table(["model", "exporter", "opset", "nodes", "file", "export+validate s", "worst max abs", "valid"], rows))


if __name__ == "__main__":
    main()
