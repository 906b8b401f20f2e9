"""Backends behind one small interface: named numpy arrays in, named numpy arrays out.

Parity checks, evaluation and the timing harness are written once against `Runner` (edgenn.specs):
an onnxruntime session on any execution provider (`OrtRunner`, opened by
`edgenn.runtime.session.open_session`) and the eager PyTorch module (`TorchRunner`) are
interchangeable there. torch is imported only by TorchRunner's methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgenn.runtime.session import OrtRunner, open_session
from edgenn.specs import TensorSpec

__all__ = ["OrtRunner", "TorchRunner", "flatten_outputs", "open_session"]


class TorchRunner:
    """An eager nn.Module (eval mode, no grad) as a Runner; inputs are passed in `inputs` order.

    `inputs` are the input specs (or just their names); `device` is "cpu" or "cuda".
    """

    def __init__(
        self,
        module: Any,
        inputs: Sequence[TensorSpec] | Sequence[str],
        output_names: Sequence[str] | None = None,
        name: str = "eager",
        device: str = "cpu",
    ) -> None:
        self.module = module.eval()
        self.inputs = tuple(s for s in inputs if isinstance(s, TensorSpec))
        self.input_names = [s.name if isinstance(s, TensorSpec) else str(s) for s in inputs]
        self.output_names = list(output_names) if output_names else None
        self.name = name
        self.device = device

    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self.inputs

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names]
        with torch.no_grad():
            out = self.module(*args)
        flat = flatten_outputs(out)
        names = self.output_names or [f"output_{i}" for i in range(len(flat))]
        return {n: t.detach().cpu().numpy() for n, t in zip(names, flat)}

    def prepared_call(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """module(*inputs) under inference_mode, as users run it; on the GPU it waits for the kernels."""
        import torch

        module = self.module.to(self.device)
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names)
        inference = torch.inference_mode
        if self.device == "cpu":

            def call() -> Any:
                with inference():
                    return module(*tensors)

            return call
        sync = torch.cuda.synchronize

        def call_and_wait() -> Any:
            with inference():
                out = module(*tensors)
            sync()
            return out

        return call_and_wait


def flatten_outputs(out: Any) -> list[Any]:
    """A module's output (tensor, tuple/list/dict of them, nested) as a flat list, in order."""
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in flatten_outputs(item)]
    if isinstance(out, dict):
        return [t for key in out for t in flatten_outputs(out[key])]
    return [out]
