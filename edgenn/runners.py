"""Backends behind one small interface: named numpy arrays in, named numpy arrays out.

Parity checks and benchmarks are written once against `Runner` (edgenn.specs): an onnxruntime
session on some execution provider and the eager PyTorch module are interchangeable there.
torch is imported only by TorchRunner's methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgenn.errors import ModelFileError, first_line

_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


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
            first = first_line(exc)
            raise ModelFileError(f"onnxruntime cannot load {str(path)!r}: {first}") from None
        self.name = name or str(path)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(feeds))))

    @property
    def device(self) -> str:
        """The device the session computes on: "cuda" for a GPU provider, else "cpu"."""
        return "cuda" if self.session.get_providers()[0] in _GPU_PROVIDERS else "cpu"

    def prepared_call(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """A call with no arguments that runs the model on these fixed feeds: for timing loops.

        On the CPU it is `session.run` on a pre-built feed dict. On a GPU provider the inputs are
        copied to the device once and inputs and outputs are bound there (IO binding), so each call
        times the model and not the host-device copies; the outputs stay on the device.
        """
        if self.device != "cpu":
            return self._bound_call(feeds)
        run, names, fixed = self.session.run, self.output_names, dict(feeds)

        def call() -> Any:  # a closure: about 40 ns cheaper per call than functools.partial here
            return run(names, fixed)

        return call

    def _bound_call(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        import onnxruntime as ort

        binding = self.session.io_binding()
        on_device = {n: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), "cuda", 0) for n, a in feeds.items()}
        for name, value in on_device.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)
        # One run lets ORT allocate outputs of the right shapes; binding those keeps later calls
        # free of output allocations.
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        binding.clear_binding_outputs()
        for name, value in zip(self.output_names, outputs, strict=True):
            binding.bind_ortvalue_output(name, value)
        run_bound = self.session.run_with_iobinding

        def call(_alive: Any = (on_device, outputs)) -> Any:  # the device buffers must outlive the binding
            return run_bound(binding)

        return call


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
