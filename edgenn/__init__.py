"""edgenn: PyTorch -> validated ONNX -> quantized -> benchmarked -> embedded with onnxruntime.

The public API is re-exported here lazily: `import edgenn` (and `import edgenn.runtime`) costs
no torch import; `edgenn.export` and friends import what they need when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgenn.errors import EdgennError

# public name -> module that defines it
_LAZY = {
    "train": "edgenn.train",
    "TrainConfig": "edgenn.train",
    "summarize": "edgenn.summary",
    "export": "edgenn.export",
    "ExportOptions": "edgenn.export",
    "validate": "edgenn.validate",
    "quantize": "edgenn.quantize",
    "bench": "edgenn.bench",
    "build": "edgenn.build",
}

__all__ = ["EdgennError", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgenn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
