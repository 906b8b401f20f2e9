"""A small ResNet: a 16-channel stem and three residual blocks with BatchNorm (1x32x32)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgenn.specs import Preprocessing
from edgenn.zoo.base import Classifier
from edgenn.zoo.registry import image_input, register


def conv3x3(n_in: int, n_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(n_in, n_out, stride)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.conv2 = conv3x3(n_out, n_out)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or n_in != n_out:
            self.shortcut = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(Classifier):
    def __init__(self, softmax_output: bool = False) -> None:
        super().__init__(softmax_output)
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = ResidualBlock(16, 16, stride=1)
        self.layer2 = ResidualBlock(16, 32, stride=2)
        self.layer3 = ResidualBlock(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@register(
    "resnet",
    inputs=image_input(32),
    preprocessing=Preprocessing("image", size=(32, 32)),
    description="ResNet: stem 16, residual blocks 16-16, 16-32 (s2), 32-64 (s2), BatchNorm, GAP, fc 10",
    accuracy_target=0.97,
    epochs=15,
)
def resnet(softmax_output: bool = False) -> ResNet:
    return ResNet(softmax_output)
