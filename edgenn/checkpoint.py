"""Weights on disk as safetensors: no pickle is ever executed to load them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from edgenn.errors import EdgennError, ModelFileError, first_line
from edgenn.fileio import WRITE_ERRNOS, atomic_path, os_error_in, write_error

FORMAT = "edgenn-weights-v1"


def save_weights(model: nn.Module, model_name: str, path: str | os.PathLike[str]) -> Path:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    size = sum(t.numel() * t.element_size() for t in tensors.values())  # the header comes on top
    with atomic_path(path, size) as tmp:
        # One metadata key: safetensors writes a map's keys in no fixed order, and the file's bytes must
        # be the same run to run (the build hashes them to decide what to redo).
        try:
            save_file(tensors, str(tmp), metadata={"edgenn": json.dumps({"format": FORMAT, "model": model_name})})
        except SafetensorError as exc:  # its I/O errors come as text: "... (os error 28)"
            cause = os_error_in(str(exc))
            if cause is None or cause.errno not in WRITE_ERRNOS:
                raise EdgennError(f"cannot write weights {str(path)!r}: {first_line(exc)}") from None
            tmp.unlink(missing_ok=True)  # before the free space is measured
            raise write_error(cause, path, size, at_least=True) from None
    return Path(path)


def load_weights(model: nn.Module, model_name: str, path: str | os.PathLike[str]) -> nn.Module:
    """Load weights saved by `save_weights` for `model_name` into `model` (strictly)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"weights file {str(path)!r} not found; train one with `edgenn train {model_name}`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = _edgenn_metadata(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"{str(path)!r} is not a readable edgenn checkpoint ({first_line(exc)}); "
            f"it may be truncated: train again with `edgenn train {model_name}`"
        ) from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{str(path)!r} is a safetensors file but not an edgenn checkpoint (no {FORMAT} tag)")
    if meta.get("model") != model_name:
        raise ModelFileError(
            f"{str(path)!r} holds weights for {meta.get('model')!r}, not {model_name!r}; pass the matching model name"
        )
    expected = model.state_dict()
    if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
        raise ModelFileError(f"{str(path)!r} does not match the architecture of {model_name!r}")
    model.load_state_dict(tensors, strict=True)
    return model


def _edgenn_metadata(raw: dict[str, str]) -> dict[str, str]:
    try:
        data = json.loads(raw.get("edgenn", "{}"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


__all__ = ["save_weights", "load_weights"]
