"""Library versions for records and reports, read without importing the libraries."""

from __future__ import annotations

import platform
from importlib import metadata

_LIBRARIES = ("edgenn", "torch", "onnx", "onnxruntime", "onnxscript", "numpy", "scikit-learn")


def library_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        version = library_version(name)
        if version is not None:
            found[name] = version
    return found


def edgenn_version() -> str:
    return library_version("edgenn") or "0+unknown"
