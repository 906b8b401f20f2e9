"""LeNet-5 (1x32x32) and the two-conv SimpleCNN (1x28x28) of the tutorials."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgenn.specs import Preprocessing
from edgenn.zoo.base import Classifier
from edgenn.zoo.registry import image_input, register


class LeNet5(Classifier):
    def __init__(self, softmax_output: bool = False) -> None:
        super().__init__(softmax_output)
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SimpleCNN(Classifier):
    def __init__(self, softmax_output: bool = False) -> None:
        super().__init__(softmax_output)
        self.conv1 = nn.Conv2d(1, 32, 3, stride=1, padding=1)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=1, padding=1)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)
        for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.pool1(self.conv1(x)))
        x = F.relu(self.pool2(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


@register(
    "lenet5",
    inputs=image_input(32),
    preprocessing=Preprocessing("image", size=(32, 32)),
    description="LeNet-5: conv 6@5x5, conv 16@5x5, fc 120-84-10, ReLU and max pooling",
    accuracy_target=0.97,
)
def lenet5(softmax_output: bool = False) -> LeNet5:
    return LeNet5(softmax_output)


@register(
    "simple_cnn",
    inputs=image_input(28),
    preprocessing=Preprocessing("image", size=(28, 28)),
    description="SimpleCNN: conv 32@3x3, conv 64@3x3 (pool 2 each), fc 128-10, xavier init",
    accuracy_target=0.97,
    epochs=20,
)
def simple_cnn(softmax_output: bool = False) -> SimpleCNN:
    return SimpleCNN(softmax_output)
