"""A per-layer table of a module, as torchsummary prints it: output shapes and parameter counts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from edgenn.specs import TensorSpec


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    trainable: int


@dataclass(frozen=True)
class ModelSummary:
    model: str
    inputs: tuple[TensorSpec, ...]
    batch_size: int
    layers: tuple[LayerRow, ...]
    total_parameters: int
    trainable_parameters: int
    parameter_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "inputs": [s.to_dict() for s in self.inputs],
            "batch_size": self.batch_size,
            "layers": [{**asdict(r), "output_shape": list(r.output_shape)} for r in self.layers],
            "total_parameters": self.total_parameters,
            "trainable_parameters": self.trainable_parameters,
            "parameter_bytes": self.parameter_bytes,
        }


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def summarize(model: nn.Module, inputs: tuple[TensorSpec, ...], batch_size: int = 1, name: str = "") -> ModelSummary:
    """Run one forward pass at `batch_size` and record every leaf module that was called, in order."""
    rows: list[LayerRow] = []
    hooks = []

    def record(layer_name: str):
        def hook(module: nn.Module, _args: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            params = list(module.parameters(recurse=False))
            rows.append(
                LayerRow(
                    layer_name,
                    type(module).__name__,
                    tuple(tensor.shape) if tensor is not None else (),
                    sum(p.numel() for p in params),
                    sum(p.numel() for p in params if p.requires_grad),
                )
            )

        return hook

    for layer_name, module in model.named_modules():
        if layer_name and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(record(layer_name)))
    example = [
        torch.zeros(spec.concrete_shape(batch_size, sequence=8), dtype=getattr(torch, spec.dtype)) for spec in inputs
    ]
    try:
        with torch.no_grad():
            model.eval()(*example)
    finally:
        for h in hooks:
            h.remove()
    params = list(model.parameters())
    return ModelSummary(
        name or type(model).__name__,
        tuple(inputs),
        batch_size,
        tuple(rows),
        sum(p.numel() for p in params),
        sum(p.numel() for p in params if p.requires_grad),
        sum(p.numel() * p.element_size() for p in params),
    )
