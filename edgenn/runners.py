"""Backends behind one small interface: named numpy arrays in, named numpy arrays out.

Parity checks and benchmarks are written once against `Runner` (edgenn.specs): an onnxruntime
session on some execution provider and the eager PyTorch module are interchangeable there.
torch is imported only by TorchRunner's methods.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from edgenn.errors import ModelFileError


class OrtRunner:
    """An onnxruntime InferenceSession as a Runner (no input checks: that is edgenn.runtime's job)."""

    def __init__(self, path: str, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0,
                 name: str = "") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelFileError(f"onnxruntime cannot load {str(path)!r}: {first}") from None
        self.name = name or str(path)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(feeds))))


class TorchRunner:
    """An eager nn.Module (eval mode, no grad) as a Runner; inputs are passed in `input_names` order."""

    def __init__(self, module: Any, input_names: Sequence[str], output_names: Sequence[str] | None = None,
                 name: str = "eager") -> None:
        self.module = module.eval()
        self.input_names = list(input_names)
        self.output_names = list(output_names) if output_names else None
        self.name = name

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        with torch.no_grad():
            out = self.module(*args)
        flat = flatten_outputs(out)
        names = self.output_names or [f"output_{i}" for i in range(len(flat))]
        return {n: t.detach().cpu().numpy() for n, t in zip(names, flat)}


def flatten_outputs(out: Any) -> list[Any]:
    """A module's output (tensor, tuple/list/dict of them, nested) as a flat list, in order."""
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in flatten_outputs(item)]
    if isinstance(out, dict):
        return [t for key in out for t in flatten_outputs(out[key])]
    return [out]
