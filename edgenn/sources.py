"""Where a model comes from: a zoo name (with trained weights), or a user's code.

A SOURCE is a zoo name (`lenet5`), a file (`path/to/file.py:factory`) or an importable module
(`package.module:attr`). The attribute may be an nn.Module, an nn.Module class (built with no
arguments), or a function returning a module or `(module, example_inputs)`; example inputs are a
tensor, a tuple of arguments (tensors, lists or dicts of tensors) or a dict of keyword arguments
(edgenn.calling names them after forward's parameters).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgenn.calling import CallLayout, flat_call, forward_parameters, layout_of, positional_layout
from edgenn.errors import EdgennError, InputError, first_line
from edgenn.specs import BATCH, Preprocessing, TensorSpec

# Dynamic dims other than batch get this size in generated example inputs unless told otherwise
# (--dim NAME=SIZE[,SIZE2]); parity checks them again at a second size, 2n-1 unless told.
DEFAULT_DIM_SIZE = 8


def second_size(size: int) -> int:
    """The second size a dynamic dim is checked at: odd, and far enough from the first to catch a pinned dim."""
    return 2 * size - 1


@dataclass
class LoadedSource:
    """A module ready to export or run eagerly, with what is known about its inputs and outputs."""

    name: str
    module: nn.Module
    input_specs: tuple[TensorSpec, ...]
    labels: tuple[str, ...] = ()
    preprocessing: Preprocessing | None = None
    accuracy: float | None = None  # test accuracy recorded by training, where known
    user_examples: tuple[torch.Tensor, ...] | None = None  # from a factory returning (module, inputs), flat
    zoo_name: str | None = None
    # sizes of named dynamic dims: (export size, second parity size or None for 2n-1), from --dim
    dim_sizes: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    layout: CallLayout | None = None  # how the flat inputs reach forward (None: positionally)
    random_weights: bool = False  # a zoo model exported without trained weights, as asked

    def example_inputs(self, batch: int, seed: int = 0, **dim_sizes: int) -> tuple[torch.Tensor, ...]:
        """Inputs at `batch`: real test digits for zoo models, random data (seeded) otherwise."""
        if self.zoo_name is not None and self.preprocessing is not None and not dim_sizes:
            from edgenn.data import load_digits_split
            from edgenn.preprocess import digits_to_input

            images = load_digits_split().test.images
            repeated = np.concatenate([images] * -(-batch // len(images)))[:batch]
            return (torch.from_numpy(digits_to_input(repeated, self.preprocessing)),)
        gen = torch.Generator().manual_seed(seed)
        sizes = {**self._user_dim_sizes(), **dim_sizes}
        return tuple(
            random_tensor(spec.concrete_shape(batch, **sizes), spec.dtype, gen, integer_high(self.module))
            for spec in self.input_specs
        )

    def _user_dim_sizes(self) -> dict[str, int]:
        """Sizes of symbolic non-batch dims: --dim, else the user's example inputs, else DEFAULT_DIM_SIZE."""
        sizes: dict[str, int] = {name: pair[0] for name, pair in self.dim_sizes.items()}
        for spec, example in zip(self.input_specs, self.user_examples or ()):
            for dim, size in zip(spec.shape, example.shape):
                if isinstance(dim, str) and dim != BATCH:
                    sizes.setdefault(dim, int(size))
        for spec in self.input_specs:
            for dim in spec.shape:
                if isinstance(dim, str) and dim != BATCH:
                    sizes.setdefault(dim, DEFAULT_DIM_SIZE)
        return sizes

    def second_dim_sizes(self) -> dict[str, int]:
        """The second size of each named dynamic dim (other than batch) that parity checks."""
        first = self._user_dim_sizes()
        named = {str(d) for s in self.input_specs for d in s.shape if isinstance(d, str) and d != BATCH}
        return {d: (self.dim_sizes.get(d, (0, None))[1] or second_size(first[d])) for d in sorted(named) if d in first}

    @property
    def dims_explained(self) -> bool:
        """Whether the user chose the sizes of every named dim (so a failure there is the model's)."""
        named = {str(d) for s in self.input_specs for d in s.shape if isinstance(d, str) and d != BATCH}
        return named <= set(self.dim_sizes)


def random_tensor(shape: tuple[int, ...], dtype: str, gen: torch.Generator, int_high: int = 16) -> torch.Tensor:
    if dtype in ("int64", "int32", "int8", "uint8"):
        return torch.randint(0, int_high, shape, generator=gen, dtype=getattr(torch, dtype))
    if dtype == "bool":
        return torch.randint(0, 2, shape, generator=gen).bool()
    return torch.randn(shape, generator=gen).to(getattr(torch, dtype))


def integer_high(module: nn.Module) -> int:
    """An exclusive upper bound for random token ids that every embedding of `module` accepts."""
    sizes = [m.num_embeddings for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    return max(1, min(sizes)) if sizes else 16


def load_source(
    spec: str,
    weights: str | Path | None = None,
    input_specs: tuple[TensorSpec, ...] = (),
    softmax_output: bool | None = None,
    random_weights: bool = True,
) -> LoadedSource:
    """Resolve SOURCE into a module in eval mode, with input specs from the zoo, options or examples.

    A zoo model without `weights` is refused unless `random_weights`: an untrained export that
    validates is a confident wrong answer (export says False; eager baselines and summaries need
    no trained weights).
    """
    from edgenn import zoo

    if ":" not in spec:
        if spec not in zoo.names() and (spec.endswith(".py") or "/" in spec):
            raise EdgennError(f"source {spec!r} names no attribute; write {spec}:factory (a function, class or module)")
        return _load_zoo(spec, weights, input_specs, softmax_output, random_weights)
    if weights is not None:
        raise EdgennError("--weights applies to zoo models; a user's factory loads its own weights")
    location, attr = spec.rsplit(":", 1)
    namespace = _import_location(location)
    if not hasattr(namespace, attr):
        found = sorted(n for n in vars(namespace) if not n.startswith("_"))
        raise EdgennError(f"{location!r} has no attribute {attr!r}; it defines: {', '.join(found) or 'nothing public'}")
    module, examples = _build(getattr(namespace, attr), spec)
    module = module.eval()
    if examples is not None:
        layout, flat = layout_of(module, examples, repr(spec))
    else:
        layout, flat = positional_layout(module, len(input_specs)), None
    if input_specs and flat is not None and len(input_specs) != len(flat):
        raise InputError(
            f"{spec!r} takes {len(flat)} input tensor(s) ({', '.join(layout.names)}), --input gave {len(input_specs)}"
        )
    specs = input_specs or _specs_from_examples(flat, spec, layout.names, module)
    return LoadedSource(spec, flat_call(module, layout), specs, user_examples=flat, layout=layout)


def _load_zoo(
    name: str,
    weights: Any,
    input_specs: tuple[TensorSpec, ...],
    softmax_output: bool | None,
    random_weights: bool,
) -> LoadedSource:
    from edgenn import zoo
    from edgenn.checkpoint import load_weights

    entry = zoo.entry(name)
    if weights is None and not random_weights:
        raise EdgennError(
            f"{name} is a zoo model and no --weights were given: pass --weights runs/{name}/model.safetensors "
            f"(from `edgenn train {name}`; models/{name}/ has them too), or --random-weights to export it untrained"
        )
    input_specs = _zoo_inputs(entry, input_specs)
    kwargs = {} if softmax_output is None else {"softmax_output": softmax_output}
    module = zoo.create(name, **kwargs)
    accuracy = None
    if weights is not None:
        load_weights(module, name, weights)
        accuracy = _recorded_accuracy(Path(weights))
    return LoadedSource(
        name,
        module.eval(),
        input_specs or entry.inputs,
        entry.labels,
        entry.preprocessing,
        accuracy,
        zoo_name=name,
        random_weights=weights is None,
    )


def _zoo_inputs(entry: Any, given: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """A zoo model's inputs are its own: --input may rename them, not change their shape or dtype."""
    if not given:
        return entry.inputs
    own = ", ".join(str(s) for s in entry.inputs)
    if len(given) != len(entry.inputs):
        raise InputError(f"{entry.name} takes {len(entry.inputs)} input(s) ({own}), --input gave {len(given)}")
    for mine, theirs in zip(entry.inputs, given):
        fixed_differ = any(isinstance(a, int) and a != b for a, b in zip(mine.shape[1:], theirs.shape[1:]))
        if len(mine.shape) != len(theirs.shape) or fixed_differ or mine.dtype != theirs.dtype:
            raise InputError(f"{entry.name} takes {own}; --input {theirs} does not fit (drop --input for zoo models)")
    return tuple(TensorSpec(theirs.name, mine.shape, mine.dtype) for mine, theirs in zip(entry.inputs, given))


def _recorded_accuracy(weights: Path) -> float | None:
    import json

    record = weights.with_name("train.json")
    try:
        return float(json.loads(record.read_text())["test_accuracy"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _import_location(location: str) -> Any:
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = Path(location)
        if not path.is_file():
            raise EdgennError(f"file {location!r} not found; give the path of a .py file, like models/net.py:build")
        module_name = "edgenn_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise EdgennError(f"cannot import {location!r}: not a Python source file")
        namespace = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = namespace
        try:
            spec.loader.exec_module(namespace)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise EdgennError(f"importing {location!r} failed: {type(exc).__name__}: {first_line(exc)}") from None
        return namespace
    if os.getcwd() not in sys.path:  # `edgenn export mypkg.models:build` finds mypkg where the user stands
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        raise EdgennError(
            f"module {location!r} not found ({exc.name} is not importable); check the name or PYTHONPATH"
        ) from None
    except Exception as exc:
        raise EdgennError(f"importing {location!r} failed: {type(exc).__name__}: {first_line(exc)}") from None


def _build(obj: Any, spec: str) -> tuple[nn.Module, Any]:
    if isinstance(obj, nn.Module):
        return obj, None
    if inspect.isclass(obj) and not issubclass(obj, nn.Module):
        raise EdgennError(f"{spec!r} is the class {obj.__name__}, not an nn.Module subclass")
    if not callable(obj):
        raise EdgennError(f"{spec!r} is a {type(obj).__name__}, not an nn.Module or a function returning one")
    try:
        made = obj()
    except Exception as exc:
        raise EdgennError(
            f"calling {spec!r} with no arguments failed: {type(exc).__name__}: {first_line(exc)}"
        ) from None
    if isinstance(made, nn.Module):
        return made, None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        return made[0], made[1]  # the examples' structure is read by edgenn.calling.layout_of
    raise EdgennError(f"{spec!r} returned a {type(made).__name__}, not an nn.Module or (module, example_inputs)")


def _specs_from_examples(
    examples: tuple[torch.Tensor, ...] | None,
    spec: str,
    names: Sequence[str] = (),
    module: nn.Module | None = None,
) -> tuple[TensorSpec, ...]:
    if not examples:
        params = forward_parameters(module) if module is not None else []
        first = params[0] if params else "x"
        takes = f" (forward takes {', '.join(params)})" if params else ""
        raise InputError(
            f"cannot tell the inputs of {spec!r}{takes}: give --input NAME:DIMS:DTYPE for each, e.g. "
            f"--input {first}:1x3x224x224:float32, or return (module, example_inputs) from the factory"
        )
    if len(names) != len(examples):
        names = ["input"] if len(examples) == 1 else [f"input_{i}" for i in range(len(examples))]
    return tuple(
        TensorSpec(n, (BATCH, *t.shape[1:]) if t.dim() else (), str(t.dtype).removeprefix("torch."))
        for n, t in zip(names, examples)
    )
