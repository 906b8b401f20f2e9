"""The one place that lists the reference models: a decorator joins a factory to the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgenn.errors import EdgennError
from edgenn.specs import BATCH, Preprocessing, TensorSpec

DIGIT_LABELS = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class ZooEntry:
    """A reference model: how to build it, what it takes, what it predicts, how to train it."""

    name: str
    factory: Callable[..., Any]
    inputs: tuple[TensorSpec, ...]
    preprocessing: Preprocessing | None
    labels: tuple[str, ...]
    description: str
    accuracy_target: float | None  # test accuracy the default training must reach (None: not graded)
    train_defaults: dict[str, Any] = field(default_factory=dict)
    trainable: bool = True  # False for demonstration models that have no dataset of their own


_REGISTRY: dict[str, ZooEntry] = {}


def register(
    name: str,
    *,
    inputs: tuple[TensorSpec, ...],
    preprocessing: Preprocessing | None,
    description: str,
    labels: tuple[str, ...] = DIGIT_LABELS,
    accuracy_target: float | None = None,
    trainable: bool = True,
    **train_defaults: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def join(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise RuntimeError(f"zoo model {name!r} registered twice")
        _REGISTRY[name] = ZooEntry(
            name,
            factory,
            inputs,
            preprocessing,
            labels,
            description,
            accuracy_target,
            dict(train_defaults),
            trainable,
        )
        return factory

    return join


def names() -> list[str]:
    return list(_REGISTRY)


def entry(name: str) -> ZooEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise EdgennError(f"unknown model {name!r}; valid names: {', '.join(_REGISTRY)}") from None


def create(name: str, **kwargs: Any) -> Any:
    """Build a fresh (untrained) zoo model; its entry hangs on it as `.zoo_entry`."""
    spec = entry(name)
    model = spec.factory(**kwargs)
    model.zoo_entry = spec
    return model


def image_input(size: int) -> tuple[TensorSpec, ...]:
    return (TensorSpec("input", (BATCH, 1, size, size), "float32"),)


FLAT_DIGITS = (TensorSpec("input", (BATCH, 64), "float32"),)
ROW_SEQUENCE = (TensorSpec("input", (BATCH, "sequence", 8), "float32"),)
