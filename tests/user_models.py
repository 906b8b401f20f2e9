"""Models a user writes without knowing edgenn: what `edgenn export file.py:factory` must take as they are.

Each factory returns a module (weights seeded, so runs repeat) or `(module, example_inputs)`. They are
the tests' fixtures and the README's examples of a user's own model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class PictureClassifier(nn.Module):
    """3x64x64 pictures -> 10 classes, with BatchNorm and Dropout (eval mode makes both deterministic)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(32, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(image).flatten(1)))


def picture_classifier() -> nn.Module:
    torch.manual_seed(0)
    return PictureClassifier()


class UNet(nn.Module):
    """A small U-Net: four poolings, so height and width must be multiples of 16."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())

        widths = [channels * 2**i for i in range(5)]
        self.down = nn.ModuleList([block(3, widths[0])] + [block(widths[i], widths[i + 1]) for i in range(4)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(4)])
        self.merge = nn.ModuleList([block(2 * widths[i], widths[i]) for i in range(4)])
        self.out = nn.Conv2d(widths[0], 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for i, down in enumerate(self.down):
            x = down(x)
            if i < 4:
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
        for i in reversed(range(4)):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.out(x)


def unet() -> nn.Module:
    torch.manual_seed(0)
    return UNet()


class TwoInputs(nn.Module):
    """A picture and a feature vector in, a dict out: what a user's multi-task model looks like."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.meta = nn.Linear(5, 8)
        self.logits = nn.Linear(16, 4)
        self.score = nn.Linear(16, 1)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.conv(image).relu().mean((2, 3))
        h = torch.cat([pooled, self.meta(features).relu()], dim=1)
        return {"logits": self.logits(h), "score": torch.sigmoid(self.score(h))}


def two_inputs():
    torch.manual_seed(0)
    return TwoInputs(), {"image": torch.rand(2, 1, 16, 16), "features": torch.rand(2, 5)}


class TextModel(nn.Module):
    """Variable-length int64 token ids -> 3 classes (mean of embeddings)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(1000, 32)
        self.encoder = nn.Linear(32, 32)
        self.head = nn.Linear(32, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids)).relu().mean(1))


def text_model():
    torch.manual_seed(0)
    return TextModel(), torch.randint(0, 1000, (2, 12))


class Prediction(NamedTuple):
    value: torch.Tensor
    uncertainty: torch.Tensor


class Regressor(nn.Module):
    """Tabular regression: 12 features -> a value and its uncertainty (a named tuple)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.value = nn.Linear(64, 1)
        self.log_var = nn.Linear(64, 1)

    def forward(self, features: torch.Tensor) -> Prediction:
        h = self.body(features)
        return Prediction(self.value(h), self.log_var(h).exp())


def regressor():
    torch.manual_seed(0)
    return Regressor(), torch.randn(4, 12)


class FullyConvolutional(nn.Module):
    """Any picture size in, a per-pixel map out (no Linear layer, no fixed size)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 2, 1)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def fully_convolutional() -> nn.Module:
    torch.manual_seed(0)
    return FullyConvolutional()


class Branchy(nn.Module):
    """Data-dependent control flow: tracing freezes one branch, so an exported file is silently wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return self.fc(x)
        return -self.fc(x)


def branchy():
    torch.manual_seed(0)
    return Branchy(), torch.randn(2, 8)


class ListInput(nn.Module):
    """A forward that takes a list of tensors and a keyword argument."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, parts: list[torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat(parts, dim=1)) * scale


def list_input():
    torch.manual_seed(0)
    return ListInput(), ([torch.randn(2, 2), torch.randn(2, 4)], torch.rand(2, 1))
