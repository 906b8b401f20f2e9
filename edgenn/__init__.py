"""edgenn: PyTorch -> validated ONNX -> quantized -> benchmarked -> embedded with onnxruntime.

The public API is re-exported here lazily: `import edgenn` (and `import edgenn.runtime`) costs
no torch import; `edgenn.export` and friends import what they need when first used.
"""

from __future__ import annotations

import importlib
import sys
import types
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
    "compare": "edgenn.compare",
    "CompareOptions": "edgenn.compare",
}

__all__ = ["EdgennError", *_LAZY]


class _StageModule(types.ModuleType):
    """A stage module that can be called as its main function.

    `edgenn.export` is the function while only `edgenn` is imported, but Python rebinds the name
    to the submodule once anything imports `edgenn.export`; calling either works the same.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def _callable_stage(module_name: str) -> None:
    sys.modules[module_name].__class__ = _StageModule


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgenn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
