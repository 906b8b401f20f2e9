"""What every reference classifier shares: logits for training, optional softmax for export."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """forward() gives logits, or probabilities when `softmax_output` is set.

    Training always uses `logits()` with a loss that applies its own softmax, so the softmax is
    never seen twice; whether the exported model ends in a softmax is a deployment choice.
    """

    def __init__(self, softmax_output: bool = False) -> None:
        super().__init__()
        self.softmax_output = softmax_output

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(x)
        return torch.softmax(z, dim=-1) if self.softmax_output else z
