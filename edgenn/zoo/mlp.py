"""The fully connected net of the tutorials: xavier + sigmoid, kaiming + ReLU, a linear head."""

from __future__ import annotations

import torch
from torch import nn

from edgenn.specs import BATCH, Preprocessing, TensorSpec
from edgenn.zoo.base import Classifier
from edgenn.zoo.registry import FLAT_DIGITS, register


class MLP(Classifier):
    def __init__(self, sizes: tuple[int, int, int, int], softmax_output: bool = False) -> None:
        super().__init__(softmax_output)
        n_in, h1, h2, n_out = sizes
        self.fc1 = nn.Linear(n_in, h1)
        self.act1 = nn.Sigmoid()
        self.fc2 = nn.Linear(h1, h2)
        self.act2 = nn.ReLU()
        self.fc3 = nn.Linear(h2, n_out)
        nn.init.xavier_normal_(self.fc1.weight)
        nn.init.kaiming_normal_(self.fc2.weight, nonlinearity="relu")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))


@register(
    "mlp",
    inputs=FLAT_DIGITS,
    preprocessing=Preprocessing("flat"),
    description="MLP 64-64-32-10: Linear+sigmoid (xavier), Linear+ReLU (kaiming), Linear head",
    accuracy_target=0.95,
)
def mlp(softmax_output: bool = False) -> MLP:
    return MLP((64, 64, 32, 10), softmax_output)


@register(
    "mlp_tutorial",
    inputs=(TensorSpec("input", (BATCH, 3), "float32"),),
    preprocessing=None,
    labels=("0", "1"),
    description="the tutorial's 3-3-2-2 MLP with softmax output (summary and export test case)",
    trainable=False,
)
def mlp_tutorial(softmax_output: bool = True) -> MLP:
    return MLP((3, 3, 2, 2), softmax_output)
