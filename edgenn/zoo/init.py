"""The weight initialisations of the tutorials, applied by name to every Linear/Conv/RNN weight."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgenn.errors import EdgennError

_WEIGHT_INITS: dict[str, Callable[[torch.Tensor], object]] = {
    "uniform": lambda w: nn.init.uniform_(w, -0.1, 0.1),
    "normal": lambda w: nn.init.normal_(w, 0.0, 0.05),
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
    "constant": lambda w: nn.init.constant_(w, 0.01),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
}

INIT_NAMES = ("default", *_WEIGHT_INITS)

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LSTM, nn.GRU, nn.RNN)


def apply_init(model: nn.Module, scheme: str) -> None:
    """Re-initialise weights with `scheme` ("default" keeps the model's own); biases become 0."""
    if scheme == "default":
        return
    if scheme not in _WEIGHT_INITS:
        raise EdgennError(f"unknown weight init {scheme!r}; valid: {', '.join(INIT_NAMES)}")
    init = _WEIGHT_INITS[scheme]
    with torch.no_grad():
        for layer in model.modules():
            if not isinstance(layer, _LAYERS):
                continue
            for name, param in layer.named_parameters(recurse=False):
                if "bias" in name:
                    nn.init.zeros_(param)
                elif param.dim() >= 2:
                    init(param)
