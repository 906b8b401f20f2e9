"""The one registry of quantization recipes: what each asks onnxruntime to do, needs, covers and costs.

    recipes.get("static-qdq").build(preprocessed, out, keep_float=[...], context=...)
    recipes.names()                       # every registered recipe, in preference order
    recipes.get("static-qdq-no-propagation").session(config)   # the session options it needs

quantize (its modes and auto mode), tune (its candidates) and the CLI's choices all list recipes
from here. A recipe that only differs in the session options it needs (onnxruntime's QDQ
propagation turned off) shares its file with the recipe it derives from (`file_key`): tune builds
that file once and measures it under both sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgenn.runtime.session import SessionConfig

MODES = ("dynamic", "static", "fp16")
FORMATS = ("qdq", "qoperator")
METHODS = ("minmax", "entropy", "percentile")

# onnxruntime's QDQPropagationTransformer moves Q/DQ pairs across data-movement nodes (MaxPool,
# Reshape, Flatten) so that more of the graph looks int8. On LeNet-5's static QDQ file it made
# batch 64 run at 1657 us against 1006 us with it off (fp32: 979 us; AMD EPYC, 1 thread).
QDQ_PROPAGATION = "QDQPropagationTransformer"


@dataclass(frozen=True)
class BuildContext:
    """What a recipe's build may ask of the workshop that runs it."""

    calibration_reader: Callable[[], Any]  # a fresh onnxruntime CalibrationDataReader (static recipes)
    calibration_cache: Path  # where calibration ranges are kept between builds of one method
    op_types: Mapping[str, str]  # node name -> op type, of the pre-processed graph


@dataclass(frozen=True)
class Recipe:
    """One way to quantize: what onnxruntime's tools are asked to do, and the session it must run in."""

    mode: str  # dynamic | static | fp16
    format: str = "qdq"  # static: qdq | qoperator
    per_channel: bool = True  # one weight scale per output channel
    method: str = "minmax"  # static calibration: minmax | entropy | percentile
    disabled_optimizers: tuple[str, ...] = ()  # onnxruntime graph transformers the session must skip
    config_entries: tuple[tuple[str, str], ...] = ()  # session config entries it needs
    registered_name: str | None = None  # set by the registry; else the name is derived from the settings
    summary: str = ""

    @property
    def name(self) -> str:
        return self.registered_name or self.file_key

    @property
    def file_key(self) -> str:
        """The name of the file this recipe builds: recipes that differ only in session options share it."""
        if self.mode == "fp16":
            return "fp16"
        if self.mode == "dynamic":
            return "dynamic" + ("-per-channel" if self.per_channel else "")
        return (
            f"static-{self.format}"
            + ("" if self.per_channel else "-per-tensor")
            + ("" if self.method == "minmax" else f"-{self.method}")
        )

    @property
    def int8(self) -> bool:
        return self.mode in ("static", "dynamic")

    @property
    def needs(self) -> str:
        """What the recipe needs besides the fp32 model."""
        return "calibration inputs (unlabelled)" if self.mode == "static" else "nothing"

    @property
    def covers(self) -> frozenset[str]:
        """Op types onnxruntime's quantizer for this recipe turns into int8 (fp16: every float op)."""
        from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

        if self.mode == "dynamic":
            return frozenset(IntegerOpsRegistry) | {"Gemm"}  # quantize_dynamic rewrites Gemm as MatMul + Add
        if self.mode == "fp16":
            return frozenset()
        if self.format == "qdq":
            return frozenset(QDQRegistry) | frozenset(QLinearOpsRegistry)
        return frozenset(QLinearOpsRegistry)

    @property
    def needs_session_options(self) -> bool:
        return bool(self.disabled_optimizers or self.config_entries)

    def session(self, base: SessionConfig) -> SessionConfig:
        """`base` with the session options this recipe needs added."""
        if not self.needs_session_options:
            return base
        return replace(
            base,
            disabled_optimizers=(*base.disabled_optimizers, *self.disabled_optimizers),
            config_entries=(*base.config_entries, *self.config_entries),
        ).checked()

    def with_method(self, method: str) -> Recipe:
        """The same recipe calibrated with another method (static only; a new, derived name)."""
        if self.mode != "static" or method == self.method:
            return self
        return replace(self, method=method, registered_name=None)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "mode": self.mode}
        if self.mode == "static":
            data.update(
                format=self.format,
                per_channel=self.per_channel,
                method=self.method,
                activations="uint8",
                weights="int8",
            )
        elif self.mode == "dynamic":
            data.update(per_channel=self.per_channel, activations="uint8 (dynamic)", weights="int8")
        else:
            data.update(inputs_outputs="float32")
        if self.needs_session_options:
            data["session"] = {
                "disabled_optimizers": list(self.disabled_optimizers),
                "config_entries": dict(self.config_entries),
            }
        return data

    # ---------------------------------------------------------------------------------- building
    def build(self, source: Path, out: Path, keep_float: Sequence[str], context: BuildContext) -> None:
        """Quantize the pre-processed model `source` into `out`, keeping the `keep_float` nodes in float."""
        if self.mode == "fp16":
            _build_fp16(source, out, keep_float)
        elif self.mode == "dynamic":
            _build_dynamic(self, source, out, keep_float, context)
        else:
            _build_static(self, source, out, keep_float, context)


def seven_bit_weights() -> bool:
    """Whether int8 weights must keep to 7 bits on this CPU (onnxruntime's `reduce_range`).

    x86 CPUs without VNNI multiply uint8 by int8 with vpmaddubsw, which adds pairs of products into
    int16 and saturates: measured on an AVX2-only AMD EPYC, a dynamic-quantized Gemm fed N(0, 1)
    features was off by 53% of its range on the CPU provider (and by 0.8% on OpenVINO's). 7-bit
    weights cannot overflow there. VNNI (AVX-512 or AVX) and AMX accumulate in int32 and need none.
    """
    from edgenn.runtime.cpuinfo import cpu_flags

    flags = set(cpu_flags())
    x86 = "avx2" in flags or "avx512f" in flags
    return x86 and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def _build_static(recipe: Recipe, source: Path, out: Path, keep_float: Sequence[str], context: BuildContext) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[recipe.method]
    cache = context.calibration_cache
    quantize_static(
        str(source),
        str(out),
        calibration_data_reader=None if cache.is_file() else context.calibration_reader(),
        quant_format=QuantFormat.QDQ if recipe.format == "qdq" else QuantFormat.QOperator,
        per_channel=recipe.per_channel,
        activation_type=QuantType.QUInt8,  # uint8 activations with int8 weights: what fuses into QLinearConv
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(keep_float),
        calibrate_method=method,
        calibration_cache_path=str(cache),
        reduce_range=seven_bit_weights(),
        # Biases stay float in the file: onnxruntime quantizes them to int32 when it fuses QLinearConv/QGemm
        # (same kernels, same outputs, measured), and the file loses the per-channel bias scales and
        # zero points (LeNet-5: 30.2% -> 29.3% of the fp32 file)
        extra_options={"QuantizeBias": False},
    )


def _build_dynamic(recipe: Recipe, source: Path, out: Path, keep_float: Sequence[str], context: BuildContext) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic first rewrites each Gemm as a MatMul named "<gemm>_MatMul" (plus an Add),
    # and matches the exclusions against the rewritten graph
    renamed = [f"{name}_MatMul" for name in keep_float if context.op_types.get(name) == "Gemm"]
    quantize_dynamic(
        str(source),
        str(out),
        per_channel=recipe.per_channel,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=[*keep_float, *renamed],
        reduce_range=seven_bit_weights(),
    )


def _build_fp16(source: Path, out: Path, keep_float: Sequence[str]) -> None:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=list(keep_float) or None)
    onnx.save(converted, str(out))


# ---------------------------------------------------------------------------------- the registry
_REGISTRY: dict[str, Recipe] = {}


def register(name: str, recipe: Recipe) -> Recipe:
    """Add a recipe under `name`; a name taken already is an error (one recipe, one name)."""
    if name in _REGISTRY:
        raise ValueError(f"recipe {name!r} is registered already")
    recipe = replace(recipe, registered_name=name)
    _REGISTRY[name] = recipe
    return recipe


def get(name: str) -> Recipe:
    from edgenn.errors import InputError

    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown recipe {name!r}; valid: {', '.join(_REGISTRY)}") from None


def names() -> tuple[str, ...]:
    """Every registered recipe, in preference order (where two are equally fast, the earlier is kept)."""
    return tuple(_REGISTRY)


def file_only() -> tuple[str, ...]:
    """The recipes whose file runs as it is, with no session option: what quantize's auto mode writes."""
    return tuple(n for n, r in _REGISTRY.items() if not r.needs_session_options)


register("static-qdq", Recipe("static", "qdq", True, summary="int8 QDQ, per-channel weights, uint8 activations"))
register("static-qdq-per-tensor", Recipe("static", "qdq", False, summary="int8 QDQ, one scale per weight tensor"))
register("static-qoperator", Recipe("static", "qoperator", True, summary="int8 QLinear* operators, per-channel"))
register("dynamic", Recipe("dynamic", per_channel=False, summary="int8 weights, activations quantized per call"))
register("fp16", Recipe("fp16", summary="float16 weights and compute, float32 inputs and outputs"))
register(
    "static-qdq-no-propagation",
    Recipe(
        "static",
        "qdq",
        True,
        disabled_optimizers=(QDQ_PROPAGATION,),
        summary="static-qdq's file, run with onnxruntime's QDQ propagation off",
    ),
)
register(
    "static-qdq-per-tensor-no-propagation",
    Recipe(
        "static",
        "qdq",
        False,
        disabled_optimizers=(QDQ_PROPAGATION,),
        summary="static-qdq-per-tensor's file, run with onnxruntime's QDQ propagation off",
    ),
)
