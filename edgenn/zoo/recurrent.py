"""LSTM and GRU classifiers that read an 8x8 digit row by row (8 steps of 8 features)."""

from __future__ import annotations

import torch
from torch import nn

from edgenn.specs import Preprocessing
from edgenn.zoo.base import Classifier
from edgenn.zoo.registry import ROW_SEQUENCE, register


class SequenceClassifier(Classifier):
    def __init__(self, cell: type[nn.Module], softmax_output: bool = False) -> None:
        super().__init__(softmax_output)
        self.rnn = cell(8, 64, batch_first=True)
        self.fc = nn.Linear(64, 10)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


@register(
    "lstm",
    inputs=ROW_SEQUENCE,
    preprocessing=Preprocessing("sequence"),
    description="LSTM(8, 64) over the 8 rows, last step's output, fc 10",
    accuracy_target=0.95,
    epochs=150,
    lr=2e-2,
)
def lstm(softmax_output: bool = False) -> SequenceClassifier:
    return SequenceClassifier(nn.LSTM, softmax_output)


@register(
    "gru",
    inputs=ROW_SEQUENCE,
    preprocessing=Preprocessing("sequence"),
    description="GRU(8, 64) over the 8 rows, last step's output, fc 10",
    accuracy_target=0.95,
    epochs=150,
    lr=2e-2,
)
def gru(softmax_output: bool = False) -> SequenceClassifier:
    return SequenceClassifier(nn.GRU, softmax_output)
