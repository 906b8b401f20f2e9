"""The reference zoo: the classic networks of the PyTorch tutorials, behind one registry.

Importing a family module registers its models; the order here is the order `names()` lists.
"""

# isort: off
from edgenn.zoo import mlp, cnn, resnet, recurrent, activations  # noqa: F401

# isort: on
from edgenn.zoo.registry import DIGIT_LABELS, ZooEntry, create, entry, names

__all__ = ["DIGIT_LABELS", "ZooEntry", "create", "entry", "names"]
