"""scikit-learn's digits (bundled, never downloaded): a fixed stratified split, per-model inputs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edgenn.preprocess import digits_to_input
from edgenn.specs import Preprocessing

SPLIT_SEED = 0
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """Digit images (N, 8, 8) float32 in [0, 1] and their labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self, prep: Preprocessing) -> np.ndarray:
        return digits_to_input(self.images, prep)


@dataclass(frozen=True)
class DigitsData:
    train: Split
    val: Split
    test: Split

    def describe(self) -> str:
        return (
            f"sklearn digits, stratified split (seed {SPLIT_SEED}): "
            f"train {len(self.train)}, val {len(self.val)}, test {len(self.test)}"
        )


@lru_cache(maxsize=1)
def load_digits_split() -> DigitsData:
    """The 1,797 digits split 60/20/20, stratified by label, the same on every machine."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED)
    val_share = VAL_FRACTION / (1.0 - TEST_FRACTION)
    train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest], random_state=SPLIT_SEED)
    return DigitsData(*(_freeze(Split(images[i], labels[i])) for i in (train, val, test)))


def _freeze(split: Split) -> Split:
    split.images.setflags(write=False)
    split.labels.setflags(write=False)
    return split
