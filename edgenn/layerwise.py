"""Layer by layer: where two runs of one model part ways, named by the PyTorch module that made the layer.

A *side* is eager PyTorch (`EagerSide`: forward hooks on the modules) or an ONNX file on a provider
(`OnnxSide`). The layers compared are the module paths export keeps on each node
(`edgenn.module`) when one side is eager, and the tensor names when both are ONNX. For each layer:

- *carried* figures: both sides run on the same inputs, so a layer's error includes what the layers
  before it passed on;
- *local* figures (where the candidate is ONNX): the candidate's layer run on the reference's values
  of the layers that feed it, so only its own error shows. The first layer whose local error passes
  the tolerance is where the two depart; errors after it are carried.

An ONNX side is read as onnxruntime deploys it: on the CPU and CUDA the graph onnxruntime optimised
(its fused kernels, real int8 ones included), not a float replay of fake quantization; a quantized
tensor is read in int8 and dequantized with its own scale. A tensor that a fused kernel computes
internally has no value to read, and the report says so. Tensors are read a chunk at a time (a
session per chunk, one side after the other), so memory stays near that of a plain run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgenn.errors import EdgennError
from edgenn.evaluate import OutputError, output_error
from edgenn.runtime.integrity import unseal
from edgenn.runtime.session import SessionConfig, open_session
from edgenn.specs import NODE_MODULE

DEFAULT_CHUNK = 64  # tensors read per session run
FLOAT_TYPES = {1, 10, 11, 16}  # float, float16, double, bfloat16 (onnx.TensorProto)
QUANTIZE_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
# Where onnxruntime's optimiser leaves the graph on the CPU and CUDA: every fusion, int8 ones included,
# but not the CPU's NCHWc layout pass, which renames and reshapes the tensors in between.
DEPLOYED_LEVEL = "extended"
_GRAPH_LEVELS = ("disable", "basic", "extended", "layout", "all")


@dataclass(frozen=True)
class LayerResult:
    """One layer of the walk: where it is, what it computes, and how far the candidate is from the reference."""

    index: int  # graph order
    module: str | None  # the PyTorch module path ("" for the top-level module), None where unknown
    op: str
    tensor: str  # the ONNX tensor compared (or the module path between two eager sides)
    shape: tuple[int, ...]
    carried: OutputError | None  # both sides on the same inputs
    local: OutputError | None  # the candidate's layer on the reference's inputs to it
    departs: bool  # its own error (local where known, else carried) is beyond the tolerance
    note: str = ""  # why a figure is missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "module": self.module,
            "op": self.op,
            "tensor": self.tensor,
            "shape": list(self.shape),
            "carried": _figures(self.carried),
            "local": _figures(self.local),
            "departs": self.departs,
            "note": self.note,
        }


@dataclass(frozen=True)
class LayerwiseReport:
    reference: str
    candidate: str
    matched_by: str  # "module path" or "tensor name"
    tolerance: float  # on the error relative to the reference's range (max |a - b| / max |a|)
    batch: int
    chunk: int
    layers: tuple[LayerResult, ...]
    hidden: tuple[str, ...] = ()  # layers with no tensor of their own on one side (fused kernels)
    notes: tuple[str, ...] = ()

    @property
    def first_departure(self) -> LayerResult | None:
        return next((layer for layer in self.layers if layer.departs), None)

    @property
    def local_known(self) -> bool:
        return any(layer.local is not None for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        first = self.first_departure
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "matched_by": self.matched_by,
            "tolerance": self.tolerance,
            "batch": self.batch,
            "chunk": self.chunk,
            "first_departure": None if first is None else first.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
            "hidden": list(self.hidden),
            "notes": list(self.notes),
        }

    def departure_line(self) -> str:
        """One line for an error message: the first departing layer, or that none departs."""
        first = self.first_departure
        if first is None:
            return "no layer departs beyond the tolerance"
        if first.module:
            where = f"module {first.module!r}"
        elif first.module == "":
            where = f"the top-level module's own forward (tensor {first.tensor!r})"
        else:
            where = f"tensor {first.tensor!r}"
        figures = first.local or first.carried
        assert figures is not None
        kind = "its own error" if first.local is not None else "error"
        return f"first departs at {where} ({first.op}, {kind} {figures.relative:.2g} of its range)"


def _figures(error: OutputError | None) -> dict[str, float] | None:
    if error is None:
        return None
    return {
        "max_abs": error.max_abs_error,
        "relative_to_range": error.relative,  # max |a - b| / max |a|: what the tolerance is on
        "sqnr_db": error.sqnr_db if math.isfinite(error.sqnr_db) else None,  # None: identical
        "cosine": error.cosine,
    }


# ------------------------------------------------------------------------------------------ sides
@dataclass(frozen=True)
class Tap:
    """How to read one float tensor on an ONNX side: by its own name, or as the int8 tensor it was
    quantized to (then dequantized with that tensor's scale and zero point)."""

    tensor: str  # the float tensor it stands for
    read: str  # the tensor read from the session
    scale: np.ndarray | None = field(default=None, compare=False)
    zero_point: np.ndarray | None = field(default=None, compare=False)
    axis: int = 1

    def value(self, raw: np.ndarray) -> np.ndarray:
        if self.scale is None:
            return raw
        shape = [1] * raw.ndim
        if self.scale.ndim == 1 and self.scale.size > 1:
            shape[self.axis % raw.ndim] = self.scale.size
        zero = 0 if self.zero_point is None else self.zero_point.astype(np.float32).reshape(shape)
        return (raw.astype(np.float32) - zero) * self.scale.astype(np.float32).reshape(shape)


class EagerSide:
    """Eager PyTorch with forward hooks on the modules compared; only the chunk's modules are hooked."""

    kind = "eager"

    def __init__(self, module: Any, input_names: Sequence[str], label: str) -> None:
        from edgenn.calling import FLAT_CALL_ATTRIBUTE, FlatCall

        self.module = module.eval()  # what is called, with the flat inputs
        # what is hooked: the user's module, not the wrapper that takes dict/list inputs flat (export
        # strips the wrapper's path prefix from the module map too)
        self.root = getattr(module, FLAT_CALL_ATTRIBUTE) if isinstance(module, FlatCall) else self.module
        self.input_names = list(input_names)
        self.label = label
        self.paths = {name for name, _ in self.root.named_modules()}

    def call_counts(self, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
        """How often each module runs in one forward pass, in the order they first finish."""
        counts: dict[str, int] = {}
        handles = [
            sub.register_forward_hook(lambda *_a, _n=name: counts.__setitem__(_n, counts.get(_n, 0) + 1))
            for name, sub in self.root.named_modules()
        ]
        try:
            self._forward(feeds)
        finally:
            for handle in handles:
                handle.remove()
        return counts

    def capture(self, feeds: Mapping[str, np.ndarray], paths: Sequence[str]) -> dict[str, np.ndarray]:
        from edgenn.runners import flatten_outputs

        wanted = set(paths)
        out: dict[str, np.ndarray] = {}

        def keep(name: str) -> Callable[..., None]:
            def hook(_module: Any, _inputs: Any, output: Any) -> None:
                first = next((t for t in flatten_outputs(output) if hasattr(t, "detach")), None)
                if first is not None:
                    out[name] = first.detach().cpu().numpy().copy()

            return hook

        handles = [sub.register_forward_hook(keep(n)) for n, sub in self.root.named_modules() if n in wanted]
        try:
            self._forward(feeds)
        finally:
            for handle in handles:
                handle.remove()
        return out

    def _forward(self, feeds: Mapping[str, np.ndarray]) -> None:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        with torch.no_grad():
            self.module(*args)


class OnnxSide:
    """An ONNX file on a provider, with any of its tensors readable.

    The file is copied once into a scratch folder with its weights as external data, so that each
    chunk's model (the graph with other outputs) is a few kilobytes written beside the same weights.
    """

    kind = "onnx"

    def __init__(
        self, path: str | Path, config: SessionConfig, label: str, scratch: Path, feed_names: Sequence[str] = ()
    ) -> None:
        import onnx

        self.path = Path(path)
        self.config = config
        self.label = label
        self.scratch = scratch
        self.notes: list[str] = []
        full = unseal(onnx.load(str(self.path)))  # the graphs cut from it are not the file its digest vouches for
        onnx.save(
            full,
            str(scratch / "original.onnx"),
            save_as_external_data=True,
            location="original.bin",
            size_threshold=1024,
        )
        del full
        self.original = onnx.load(str(scratch / "original.onnx"), load_external_data=False)
        self.original_types = _value_types(self.original)
        self.inputs = [i.name for i in self.original.graph.input]
        # the comparison's feeds may name the inputs as the other side does: matched by position
        initializers = {t.name for t in self.original.graph.initializer}
        own = [name for name in self.inputs if name not in initializers]
        self.aliases = dict(zip(feed_names, own)) if feed_names else {}
        self.deployed, self.run_config = self.original, config
        # local runs optimise as the carried figures' graph was (no layout pass on the CPU and CUDA)
        self.local_config = config
        if config.provider in ("cpu", "cuda") and _GRAPH_LEVELS.index(config.graph_optimization) > _GRAPH_LEVELS.index(
            DEPLOYED_LEVEL
        ):
            self.local_config = replace(config, graph_optimization=DEPLOYED_LEVEL)
        self.deployed_types = self.original_types
        self.deployed_outputs: set[str] = set()
        self.producer = {o: node for node in self.original.graph.node for o in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.original.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.variable = _variable_tensors(self.original)
        self.has_map = any(p.key == NODE_MODULE for node in self.original.graph.node for p in node.metadata_props)
        self._initializers = {t.name: t for t in self.original.graph.initializer}
        self._serial = 0

    def prepare(self, tensors: Sequence[str]) -> None:
        """Build the graph the taps of `tensors` are read from.

        On the CPU and CUDA it is the graph onnxruntime optimises, with each tensor to read marked as an
        output first: the optimiser never fuses away a graph output, so a module's output stays
        readable, and a float fusion kept apart this way (Conv and Relu) computes the same numbers. A
        quantized tensor is read at its int8 value, which the int8 kernel itself produces: int8
        fusions still happen.
        """
        import onnx

        reads = list(dict.fromkeys(self.read_name(t) for t in tensors))
        marked = copy.deepcopy(self.original)
        _set_outputs(marked, [*[o.name for o in self.original.graph.output], *reads], self.original_types)
        if self.config.provider not in ("cpu", "cuda"):
            self.notes.append(
                f"{self.label}: {self.config.provider} compiles the graph itself; its tensors are read by marking them "
                "as outputs, which can keep it from fusing across them"
            )
            self.deployed, self.run_config = marked, self.config
        else:
            source = self.scratch / "marked.onnx"
            onnx.save(marked, str(source))
            level = self.config.graph_optimization
            if _GRAPH_LEVELS.index(level) > _GRAPH_LEVELS.index(DEPLOYED_LEVEL):
                level = DEPLOYED_LEVEL
            entries = (
                *self.config.config_entries,
                ("session.optimized_model_external_initializers_file_name", "deployed.bin"),
                ("session.optimized_model_external_initializers_min_size_in_bytes", "1024"),
            )
            target = self.scratch / "deployed.onnx"
            runner = open_session(
                source,
                replace(self.config, graph_optimization=level, config_entries=entries),
                name=self.label,
                optimized_path=target,
                checks=False,  # the marked copy of a file checked when it was opened
            )
            del runner
            source.unlink()
            self.deployed = onnx.load(str(target), load_external_data=False)
            self.run_config = replace(self.config, graph_optimization="disable")
        self.deployed_types = {**self.original_types, **_value_types(self.deployed)}
        self.deployed_outputs = {o for node in self.deployed.graph.node for o in node.output if o}

    def read_name(self, tensor: str) -> str:
        """The tensor read for float `tensor`: its int8 value where a QuantizeLinear quantizes it."""
        quantizer = self._quantizer(tensor)
        return tensor if quantizer is None else quantizer.output[0]

    def _quantizer(self, tensor: str) -> Any:
        return next(
            (n for n in self.consumers.get(tensor, ()) if n.op_type == "QuantizeLinear" and n.input[0] == tensor), None
        )

    # ---------------------------------------------------------------- what can be read
    def tap(self, tensor: str) -> Tap | None:
        """How the prepared graph gives `tensor` (a float tensor of the original graph), or None (fused away)."""
        if tensor in self.inputs:
            return Tap(tensor, tensor)
        quantizer = self._quantizer(tensor)
        if quantizer is not None and quantizer.output[0] in self.deployed_outputs:
            scale = self._constant(quantizer.input[1])
            zero = self._constant(quantizer.input[2]) if len(quantizer.input) > 2 else None
            if scale is None:
                return None
            axis = next((a.i for a in quantizer.attribute if a.name == "axis"), 1)
            return Tap(tensor, quantizer.output[0], scale, zero, axis)
        if tensor in self.deployed_outputs and self.deployed_types.get(tensor, (0,))[0] in FLOAT_TYPES:
            return Tap(tensor, tensor)
        return None

    def _constant(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        tensor = self._initializers.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor, base_dir=str(self.scratch))

    def module_of(self, tensor: str) -> str | None:
        node = self.producer.get(tensor)
        if node is None:
            return None
        return next((p.value for p in node.metadata_props if p.key == NODE_MODULE), None)

    def layer_tensors(self) -> list[tuple[str, str]]:
        """(tensor, op) of every float tensor a layer computes from the inputs, in graph order (no Q/DQ)."""
        out = []
        for node in self.original.graph.node:
            if node.op_type in QUANTIZE_OPS or node.op_type == "Constant":
                continue
            for name in node.output[:1]:
                if name in self.variable and self.original_types.get(name, (1,))[0] in FLOAT_TYPES:
                    out.append((name, node.op_type))
        return out

    def module_outputs(self) -> list[ModuleOutput]:
        """What each module's forward returns, in graph order: the float tensors made inside its scope and
        read outside it (or graph outputs). Quantize/Dequantize nodes carry no scope and are looked
        through."""
        scope = {id(node): _module_of(node) for node in self.original.graph.node}
        graph_outputs = {o.name for o in self.original.graph.output}
        position = {o: i for i, node in enumerate(self.original.graph.node) for o in node.output}
        made: dict[str, list[tuple[int, str, Any]]] = {}
        for i, node in enumerate(self.original.graph.node):
            module = scope[id(node)]
            if module is None or node.op_type in QUANTIZE_OPS:
                continue
            for name in node.output:
                if name and name in self.variable and self.original_types.get(name, (1,))[0] in FLOAT_TYPES:
                    parts = module.split(".") if module else []
                    for depth in range(len(parts) + 1):
                        made.setdefault(".".join(parts[:depth]), []).append((i, name, node))
        out = []
        for module, tensors in made.items():
            inside = module + "."
            escaping = []
            for i, name, node in tensors:
                readers = self._readers(name)
                outside = [r for r in readers if not _within(scope[id(r)], module, inside)]
                if name in graph_outputs or outside:
                    escaping.append((i, name, node))
            if not escaping:
                continue
            last = max(i for i, _, _ in escaping)
            if len(escaping) > 1:
                out.append(ModuleOutput(module, "", "", last, f"returns {len(escaping)} tensors: not compared"))
                continue
            _, name, node = escaping[0]
            out.append(ModuleOutput(module, name, node.op_type, position[name], folded=_folded_activation(name, node)))
        # graph order; where a module and its last submodule end on one node, the submodule first
        out.sort(key=lambda m: (m.position, -m.module.count("."), -len(m.module)))
        return out

    def _readers(self, tensor: str) -> list[Any]:
        """The nodes that read `tensor`, looking through Quantize/DequantizeLinear pairs."""
        out = []
        for node in self.consumers.get(tensor, ()):
            if node.op_type in QUANTIZE_OPS and node.output:
                out.extend(self._readers(node.output[0]))
            else:
                out.append(node)
        return out

    def feeding(self, tensor: str, cuts: set[str]) -> set[str]:
        """The tensors in `cuts` (and graph inputs) that `tensor`'s computation starts from."""
        found, seen, todo = set(), set(), [tensor]
        while todo:
            name = todo.pop()
            node = self.producer.get(name)
            if node is None:
                continue
            for source in node.input:
                if not source or source in seen or source not in self.variable:
                    continue
                seen.add(source)
                if source in cuts or source in self.inputs:
                    found.add(source)
                else:
                    todo.append(source)
        return found

    # ---------------------------------------------------------------- reading
    def capture(self, feeds: Mapping[str, np.ndarray], taps: Sequence[Tap]) -> dict[str, np.ndarray]:
        """The value of each tap's tensor on these inputs, as the deployed graph computes it."""
        model = copy.deepcopy(self.deployed)
        types = self.deployed_types
        reads = list(dict.fromkeys(t.read for t in taps))
        _set_outputs(model, reads, types)
        raw = self._run(model, self.run_config, feeds, reads)
        return {t.tensor: t.value(raw[t.read]) for t in taps}

    def capture_local(
        self, feeds: Mapping[str, np.ndarray], taps: Sequence[Tap], given: Mapping[Tap, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Each tap's value with the tensors in `given` replaced by the reference's values: the graph is
        cut there and run as the carried figures' graph is (the same optimisation level, so the same
        fused kernels, int8 ones included).

        A tensor the candidate holds in int8 is cut at its int8 value: the reference's value quantized
        with that tensor's own scale, which is what the int8 kernels after it read. Where that scale
        cannot hold the reference's values, the layers that read it show it too; the first of them is
        the one whose output quantization made it.
        """
        from onnx import helper

        model = copy.deepcopy(self.original)
        graph = model.graph
        replaced: dict[str, str] = {}
        new_nodes, extra_feeds = [], {}
        for tap, value in given.items():
            ref = f"{tap.tensor}__edgenn_reference"
            elem = self.original_types.get(tap.tensor, (1,))[0]
            # a concrete shape: providers that compile the graph (OpenVINO) refuse inputs of unknown rank
            graph.input.append(helper.make_tensor_value_info(ref, elem, list(value.shape)))
            extra_feeds[ref] = np.ascontiguousarray(value.astype(_numpy_type(elem)))
            replaced[tap.tensor] = ref
            if tap.read != tap.tensor:  # int8 in the candidate: its readers read Q(reference)
                quantizer = self._quantizer(tap.tensor)
                node = copy.deepcopy(quantizer)
                node.name = f"{quantizer.name}__edgenn_reference"
                node.input[0] = ref
                node.output[0] = f"{tap.read}__edgenn_reference"
                new_nodes.append(node)
                replaced[tap.read] = node.output[0]
        own_quantizers = {t.read for t in taps if t.read != t.tensor}
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name in replaced and not (node.op_type == "QuantizeLinear" and node.output[0] in own_quantizers):
                    node.input[i] = replaced[name]
        # first: they read only the new inputs and weights, and the graph must stay in topological order
        nodes = [*new_nodes, *graph.node]
        del graph.node[:]
        graph.node.extend(nodes)
        reads = list(dict.fromkeys(t.read for t in taps))
        _set_outputs(model, reads, self.original_types)
        _prune(model, reads)
        used = {name for node in model.graph.node for name in node.input}
        used |= {t.name for t in model.graph.initializer}  # IR < 4 lists every initializer as an input too
        keep_inputs = [i for i in model.graph.input if i.name in used]
        del model.graph.input[:]
        model.graph.input.extend(keep_inputs)
        all_feeds = {**{self.aliases.get(k, k): v for k, v in feeds.items()}, **extra_feeds}
        run_feeds = {i.name: all_feeds[i.name] for i in keep_inputs if i.name in all_feeds}
        raw = self._run(model, self.local_config, run_feeds, reads)
        return {t.tensor: t.value(raw[t.read]) for t in taps}

    def _run(self, model: Any, config: SessionConfig, feeds: Mapping[str, np.ndarray], reads: Sequence[str]) -> dict:
        import onnx

        self._serial += 1
        path = self.scratch / f"chunk{self._serial}.onnx"
        # inputs no node reads any more (an old-style model's weights, listed as inputs and folded away
        # by the optimiser) would otherwise be required feeds
        used = {name for node in model.graph.node for name in node.input} | set(reads)
        used |= {t.name for t in model.graph.initializer}  # IR < 4 lists every initializer as an input too
        keep = [i for i in model.graph.input if i.name in used]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        onnx.save(model, str(path))
        try:
            runner = open_session(path, config, name=self.label, checks=False)  # a cut of a checked file
            wanted = {i.name for i in model.graph.input}
            feeds = {self.aliases.get(k, k): v for k, v in feeds.items()}
            values = runner.infer({k: v for k, v in feeds.items() if k in wanted})
            del runner
        finally:
            path.unlink(missing_ok=True)
        return {name: values[name] for name in reads}


@dataclass(frozen=True)
class ModuleOutput:
    """A module's output in an ONNX graph: the tensor its forward returns, or why none is compared."""

    module: str
    tensor: str
    op: str
    position: int
    note: str = ""  # why it is not compared
    folded: str | None = None  # an activation a quantizer folded into the module's node ("Relu")


def _module_of(node: Any) -> str | None:
    return next((p.value for p in node.metadata_props if p.key == NODE_MODULE), None)


def _within(scope: str | None, module: str, inside: str) -> bool:
    if scope is None:
        return False
    return module == "" or scope == module or scope.startswith(inside)


def _folded_activation(tensor: str, node: Any) -> str | None:
    """ "Relu" where onnxruntime's quantizer removed the Relu after `node` and gave `node` its output: the
    tensor is then named after the Relu (relu_1, /Relu_output_0) while the node is a Conv or Gemm.
    Quantization clamps at zero there, so the Relu had nothing left to do."""
    if node.op_type in ("Relu", "Clip") or "relu" not in tensor.lower():
        return None
    return "Relu" if node.op_type in ("Conv", "Gemm", "MatMul", "Add", "ConvTranspose") else None


def _value_types(model: Any) -> dict[str, tuple[int, Any]]:
    """Element type and type proto of every tensor the graph declares or shape inference finds."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # contrib ops, external data: keep what the file declares
        inferred = model
    types: dict[str, tuple[int, Any]] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = (value.type.tensor_type.elem_type, value.type)
    for init in model.graph.initializer:
        types.setdefault(init.name, (init.data_type, None))
    return types


def _variable_tensors(model: Any) -> set[str]:
    """The tensors that depend on a graph input (not weights, shapes of weights, constants)."""
    initializers = {t.name for t in model.graph.initializer}
    variable = {i.name for i in model.graph.input if i.name not in initializers}
    for node in model.graph.node:
        if any(name in variable for name in node.input):
            variable.update(o for o in node.output if o)
    return variable


def _set_outputs(model: Any, names: Sequence[str], types: Mapping[str, tuple[int, Any]]) -> None:
    from onnx import helper

    del model.graph.output[:]
    for name in names:
        elem, type_proto = types.get(name, (1, None))
        value = helper.make_tensor_value_info(name, elem, None)
        if type_proto is not None:
            value.type.CopyFrom(type_proto)
            value.type.tensor_type.ClearField("shape")  # the chunk runs at its own batch size
        model.graph.output.append(value)


def _prune(model: Any, outputs: Sequence[str]) -> None:
    """Keep only the nodes the outputs need (the rest may read inputs that are not fed)."""
    needed, keep = set(outputs), []
    for node in reversed(list(model.graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    del model.graph.node[:]
    model.graph.node.extend(reversed(keep))


def _numpy_type(elem: int) -> Any:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(elem)


# ------------------------------------------------------------------------------------------- walk
@dataclass(frozen=True)
class _Layer:
    index: int
    module: str | None
    op: str
    tensor: str  # what reports call it
    reference: Any  # module path (eager) or Tap (onnx)
    candidate: Any
    activation: str | None = None  # applied to the eager side's value (a Relu the quantizer folded in)


def compare_layers(
    reference: EagerSide | OnnxSide,
    candidate: EagerSide | OnnxSide,
    feeds: Mapping[str, np.ndarray],
    tolerance: float,
    chunk: int = DEFAULT_CHUNK,
    local: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
) -> LayerwiseReport:
    """Walk both sides layer by layer on `feeds`; see the module docstring for what is compared."""
    if chunk < 1:
        raise EdgennError("--chunk must be at least 1")
    layers, hidden, notes, matched_by = _match(reference, candidate, feeds)
    notes = [*notes, *getattr(reference, "notes", ()), *getattr(candidate, "notes", ())]
    local = local and isinstance(candidate, OnnxSide)
    if not local and isinstance(candidate, EagerSide):
        notes.append("local figures need an ONNX candidate: with eager PyTorch as the candidate, errors are carried")
    cuts = {layer.candidate.tensor: layer for layer in layers} if local else {}
    results: list[LayerResult] = []
    batch = len(next(iter(feeds.values()))) if feeds else 0
    groups = [layers[i : i + chunk] for i in range(0, len(layers), chunk)]
    for number, group in enumerate(groups, 1):
        if on_chunk:
            on_chunk(number, len(groups))
        feeding: dict[str, set[str]] = {}
        if local:
            for layer in group:
                feeding[layer.tensor] = candidate.feeding(layer.candidate.tensor, set(cuts) - {layer.candidate.tensor})
        boundary = {cuts[name] for names in feeding.values() for name in names if name in cuts}
        wanted = list(dict.fromkeys([*group, *sorted(boundary, key=lambda la: la.index)]))
        ref_values = _read(reference, feeds, wanted, "reference")
        cand_values = _read(candidate, feeds, group, "candidate")
        local_values: dict[str, np.ndarray] = {}
        if local:
            given = {la.candidate: ref_values[_key(la.reference)] for la in boundary}
            local_values = candidate.capture_local(feeds, [la.candidate for la in group], given)
        for layer in group:
            results.append(_result(layer, ref_values, cand_values, local_values, tolerance))
        del ref_values, cand_values, local_values
    return LayerwiseReport(
        reference.label,
        candidate.label,
        matched_by,
        tolerance,
        batch,
        chunk,
        tuple(results),
        tuple(hidden),
        tuple(dict.fromkeys(notes)),
    )


def _key(ref: Any) -> str:
    return ref.tensor if isinstance(ref, Tap) else ref


def _read(side: EagerSide | OnnxSide, feeds: Mapping[str, np.ndarray], layers: Sequence[_Layer], which: str) -> dict:
    """The values of `layers` on one side (`which`: "reference" or "candidate"), keyed as _key does."""
    values = side.capture(feeds, [getattr(layer, which) for layer in layers])
    if isinstance(side, EagerSide):
        for layer in layers:
            key = _key(getattr(layer, which))
            if layer.activation == "Relu" and key in values:
                values[key] = np.maximum(values[key], 0)
    return values


def _result(
    layer: _Layer,
    ref_values: Mapping[str, np.ndarray],
    cand_values: Mapping[str, np.ndarray],
    local_values: Mapping[str, np.ndarray],
    tolerance: float,
) -> LayerResult:
    ref = ref_values.get(_key(layer.reference))
    got = cand_values.get(_key(layer.candidate))
    if ref is None or got is None:
        return LayerResult(layer.index, layer.module, layer.op, layer.tensor, (), None, None, False, "no value read")
    if ref.shape != got.shape:
        note = f"shapes differ: {list(ref.shape)} and {list(got.shape)} (another layout there: a rewritten graph?)"
        return LayerResult(layer.index, layer.module, layer.op, layer.tensor, tuple(ref.shape), None, None, False, note)
    carried = output_error([ref], [got])
    own = local_values.get(_key(layer.candidate))
    local = output_error([ref], [own]) if own is not None and own.shape == ref.shape else None
    judged = local if local is not None else carried
    departs = not (judged.relative <= tolerance)  # NaN departs
    return LayerResult(layer.index, layer.module, layer.op, layer.tensor, tuple(ref.shape), carried, local, departs)


def _match(
    reference: EagerSide | OnnxSide, candidate: EagerSide | OnnxSide, feeds: Mapping[str, np.ndarray]
) -> tuple[list[_Layer], list[str], list[str], str]:
    notes: list[str] = []
    hidden: list[str] = []
    layers: list[_Layer] = []
    if isinstance(reference, OnnxSide) and isinstance(candidate, OnnxSide):
        if not reference.has_map:
            notes.append(f"{reference.label} has no module map (not exported by edgenn): module paths are unknown")
        shared = [(t, op) for t, op in reference.layer_tensors() if t in candidate.producer]
        if not shared:
            raise EdgennError(
                f"{reference.label} and {candidate.label} share no tensor names, so their layers cannot be matched: "
                "compare each with the eager model (matched by module path) instead"
            )
        reference.prepare([t for t, _ in shared])
        candidate.prepare([t for t, _ in shared])
        for tensor, op in shared:
            ref_tap, cand_tap = reference.tap(tensor), candidate.tap(tensor)
            if ref_tap is None or cand_tap is None:
                side = reference.label if ref_tap is None else candidate.label
                hidden.append(f"{tensor} ({op}): computed inside a fused kernel on {side}")
                continue
            # the more specific path: a quantizer may fold a functional Relu into the module's node
            module = max(
                (reference.module_of(tensor), candidate.module_of(tensor)), key=lambda m: -1 if m is None else len(m)
            )
            layers.append(_Layer(len(layers), module, op, tensor, ref_tap, cand_tap))
        return layers, hidden, notes, "tensor name"

    onnx_side = reference if isinstance(reference, OnnxSide) else candidate
    eager_side = candidate if onnx_side is reference else reference
    if isinstance(onnx_side, OnnxSide):
        if not onnx_side.has_map:
            raise EdgennError(
                f"{onnx_side.label} has no module map (exported by another tool or before edgenn kept one, or "
                "quantized by a tool that dropped it), so its "
                "layers cannot be matched to PyTorch modules: export it again with edgenn export, or compare it "
                "with another .onnx file (matched by tensor name)"
            )
        counts = eager_side.call_counts(feeds)
        mapped = onnx_side.module_outputs()
        outputs = [m for m in mapped if m.module in eager_side.paths]
        if mapped and not any(m.module for m in outputs):
            shown = ", ".join(sorted({m.module for m in mapped if m.module})[:4])
            raise EdgennError(
                f"no module of {eager_side.label} is in {onnx_side.label}'s module map ({shown}, ...): they are "
                "different models; compare two forms of one model"
            )
        for m in outputs:
            if m.note and counts.get(m.module) == 1:
                notes.append(f"module {m.module or '(top level)'!r} {m.note}")
        outputs = [m for m in outputs if not m.note]
        onnx_side.prepare([m.tensor for m in outputs if counts.get(m.module, 0) == 1])
        for m in outputs:
            module, tensor, op = m.module, m.tensor, m.op
            if counts.get(module, 0) != 1:
                if counts.get(module, 0) > 1:
                    notes.append(f"module {module!r} runs {counts[module]} times per forward pass: not compared")
                continue
            tap = onnx_side.tap(tensor)
            if tap is None:
                hidden.append(f"{module or '(top level)'} ({op}): its output is computed inside a fused kernel")
                continue
            if m.folded:
                op = f"{op}+{m.folded}"
                notes.append(
                    f"{onnx_side.label}: the quantizer folded the {m.folded} after {module!r} into its node; the eager "
                    f"side's output of {module!r} is compared after a {m.folded}"
                )
            pair = (module, tap) if reference is eager_side else (tap, module)
            layers.append(_Layer(len(layers), module, op, tensor, *pair, activation=m.folded))
        absent = sorted(
            p for p in eager_side.paths if p and counts.get(p) == 1 and p not in {la.module for la in layers}
        )
        if absent:
            shown = ", ".join(absent[:6]) + (", ..." if len(absent) > 6 else "")
            hidden.append(f"no node of its own in the graph (folded into another, or an identity): {shown}")
        return layers, hidden, notes, "module path"

    assert isinstance(reference, EagerSide) and isinstance(candidate, EagerSide)
    ref_counts, cand_counts = reference.call_counts(feeds), candidate.call_counts(feeds)
    for module, count in ref_counts.items():
        if count == 1 and cand_counts.get(module) == 1:
            layers.append(_Layer(len(layers), module, "module", module or "(top level)", module, module))
    return layers, hidden, notes, "module path"
