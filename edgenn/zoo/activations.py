"""The activation zoo: a digits MLP whose hidden layers use a different activation each."""

from __future__ import annotations

import torch
from torch import nn

from edgenn.specs import Preprocessing
from edgenn.zoo.base import Classifier
from edgenn.zoo.registry import FLAT_DIGITS, register

WIDTH = 64


def _activations() -> list[nn.Module]:
    return [
        nn.Sigmoid(),
        nn.Tanh(),
        nn.ReLU(),
        nn.LeakyReLU(0.01),
        nn.PReLU(),
        nn.ELU(alpha=1.0),
        nn.SELU(),
    ]


class ActivationZoo(Classifier):
    def __init__(self, softmax_output: bool = True) -> None:
        super().__init__(softmax_output)
        layers: list[nn.Module] = []
        n_in = 64
        for act in _activations():
            layers += [nn.Linear(n_in, WIDTH), act]
            n_in = WIDTH
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(WIDTH, 10)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x))


@register(
    "activations",
    inputs=FLAT_DIGITS,
    preprocessing=Preprocessing("flat"),
    description="7 hidden Linear(64) layers: sigmoid, tanh, ReLU, LeakyReLU, PReLU, ELU, SELU; softmax out",
    accuracy_target=0.93,
    epochs=150,
)
def activations(softmax_output: bool = True) -> ActivationZoo:
    return ActivationZoo(softmax_output)
