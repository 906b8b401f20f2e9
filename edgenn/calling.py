"""How a user's module is called, and what it returns, in named flat tensors.

ONNX graphs take and return flat lists of named tensors; a user's `forward` takes positional and
keyword arguments, lists and dicts of tensors, and returns tensors, tuples, named tuples or dicts.
This module maps one onto the other, once, so that export, parity and eager benchmarks all deal in
flat named tensors:

- input names come from `forward`'s signature (`image`, `features`), a list argument `parts` gives
  `parts_0`, `parts_1`, a dict argument `extra` gives `extra_<key>`;
- output names come from dict keys and named-tuple fields (`logits`, `score`), else `output` or
  `output_0`, `output_1`, ...;
- `FlatCall` wraps a module whose forward takes lists, dicts or keywords in one whose forward takes
  the flat tensors positionally, which is what both ONNX exporters handle best.
"""

from __future__ import annotations

import inspect
import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgenn.errors import ExportError


@dataclass(frozen=True)
class Slot:
    """One argument of forward: a tensor, a list of `count` tensors, or a dict with `keys`."""

    param: str
    kind: str  # "tensor" | "list" | "dict"
    keyword: bool = False  # passed by name (the example inputs were a dict)
    count: int = 1
    keys: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        if self.kind == "list":
            return tuple(f"{self.param}_{i}" for i in range(self.count))
        if self.kind == "dict":
            return tuple(f"{self.param}_{key}" for key in self.keys)
        return (self.param,)


@dataclass(frozen=True)
class CallLayout:
    """Forward's arguments, in order, and how many flat tensors each takes."""

    slots: tuple[Slot, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for slot in self.slots for name in slot.names())

    @property
    def flat(self) -> bool:
        """Positional tensors only: the module can be called with the flat tensors as they are."""
        return all(s.kind == "tensor" and not s.keyword for s in self.slots)

    def pack(self, tensors: Sequence[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Flat tensors -> (args, kwargs) for forward."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        position = 0
        for slot in self.slots:
            if slot.kind == "list":
                value: Any = list(tensors[position : position + slot.count])
                position += slot.count
            elif slot.kind == "dict":
                value = dict(zip(slot.keys, tensors[position : position + len(slot.keys)]))
                position += len(slot.keys)
            else:
                value = tensors[position]
                position += 1
            if slot.keyword:
                kwargs[slot.param] = value
            else:
                args.append(value)
        return tuple(args), kwargs


def forward_parameters(module: nn.Module) -> list[str]:
    """The names of forward's parameters that can take tensors (no self, no *args/**kwargs)."""
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in signature.parameters.values() if p.kind in kinds]


def layout_of(
    module: nn.Module, examples: Any, spec: str = "the module"
) -> tuple[CallLayout, tuple[torch.Tensor, ...]]:
    """The call layout and the flat tensors of a factory's example inputs.

    Examples are a tensor, a tuple/list of arguments (each a tensor, a list of tensors or a dict of
    tensors), or a dict of keyword arguments.
    """
    params = forward_parameters(module)
    if isinstance(examples, torch.Tensor):
        examples = (examples,)
    if isinstance(examples, Mapping):
        unknown = [k for k in examples if params and k not in params]
        if unknown:
            raise ExportError(
                f"{spec}: example input {unknown[0]!r} is not a parameter of forward ({', '.join(params)})"
            )
        items = [(str(k), v, True) for k, v in examples.items()]
    elif isinstance(examples, (tuple, list)):
        names = [params[i] if i < len(params) else f"input_{i}" for i in range(len(examples))]
        if len(examples) == 1 and names[0] == "input_0":
            names = ["input"]
        items = [(n, v, False) for n, v in zip(names, examples)]
    else:
        raise ExportError(f"{spec} returned example inputs of type {type(examples).__name__}; give tensors")
    slots: list[Slot] = []
    flat: list[torch.Tensor] = []
    for name, value, by_name in items:
        if isinstance(value, torch.Tensor):
            slots.append(Slot(name, "tensor", by_name))
            flat.append(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(t, torch.Tensor) for t in value):
            slots.append(Slot(name, "list", by_name, count=len(value)))
            flat.extend(value)
        elif isinstance(value, Mapping) and value and all(isinstance(t, torch.Tensor) for t in value.values()):
            slots.append(Slot(name, "dict", by_name, keys=tuple(str(k) for k in value)))
            flat.extend(value.values())
        else:
            raise ExportError(
                f"{spec}: example input {name!r} is a {type(value).__name__}; each input must be a tensor, "
                "a list of tensors or a dict of tensors"
            )
    return CallLayout(tuple(slots)), tuple(flat)


def positional_layout(module: nn.Module, count: int) -> CallLayout:
    """`count` positional tensors named after forward's parameters."""
    params = forward_parameters(module)
    names = [params[i] if i < len(params) else f"input_{i}" for i in range(count)]
    return CallLayout(tuple(Slot(n, "tensor") for n in names))


FLAT_CALL_ATTRIBUTE = "model"  # where FlatCall keeps the user's module (a prefix export strips from module paths)


class FlatCall(nn.Module):
    """`module` behind a forward that takes the flat tensors positionally, in `layout.names` order.

    Built by `flat_call`, which gives each instance's class a forward with one named parameter per
    tensor (not *args): torch.export's dynamic shapes and the input names then line up one to one.
    """

    def __init__(self, module: nn.Module, layout: CallLayout) -> None:
        super().__init__()
        self.model = module  # FLAT_CALL_ATTRIBUTE
        self.layout = layout

    def _call(self, tensors: tuple[Any, ...]) -> Any:
        args, kwargs = self.layout.pack(tensors)
        return self.model(*args, **kwargs)


def flat_call(module: nn.Module, layout: CallLayout) -> nn.Module:
    """`module` itself where its forward takes the flat tensors as they are, else a FlatCall around it."""
    if layout.flat:
        return module
    params = [_identifier(n, i) for i, n in enumerate(layout.names)]
    source = f"def forward(self, {', '.join(params)}):\n    return self._call(({', '.join(params)},))\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "<edgenn flat call>", "exec"), namespace)  # the names are sanitised identifiers
    cls = type(f"FlatCall_{type(module).__name__}", (FlatCall,), {"forward": namespace["forward"]})
    return cls(module, layout).eval()


def _identifier(name: str, index: int) -> str:
    text = re.sub(r"\W", "_", name)
    if not text or text[0].isdigit() or keyword.iskeyword(text) or text == "self":
        text = f"input_{index}_{text}"
    return text


def output_names(out: Any) -> list[str]:
    """Names for a forward's flattened outputs: dict keys and named-tuple fields, else output / output_i."""
    named = _named(out, "")
    if all(n.startswith("output_") and n[7:].isdigit() for n in named) or named == [""]:
        return ["output"] if len(named) == 1 else [f"output_{i}" for i in range(len(named))]
    return [n or f"output_{i}" for i, n in enumerate(named)]


def _named(out: Any, prefix: str) -> list[str]:
    join = (lambda key: f"{prefix}.{key}") if prefix else (lambda key: str(key))
    if isinstance(out, Mapping):
        return [n for key, value in out.items() for n in _named(value, join(key))]
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return [n for key, value in zip(out._fields, out) for n in _named(value, join(key))]
    if isinstance(out, (tuple, list)):
        if prefix:
            return [n for i, value in enumerate(out) for n in _named(value, f"{prefix}_{i}")]
        return [n for i, value in enumerate(out) for n in _named(value, f"output_{i}")]
    return [prefix]
