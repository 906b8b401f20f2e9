"""The execution providers edgenn runs on, in one table, and the devices each offers here.

Short names are what people type: ``cpu``, ``openvino``, ``cuda``, ``tensorrt``. The CPU provider
comes with every onnxruntime wheel, CUDA and TensorRT with onnxruntime-gpu (and their NVIDIA
libraries). OpenVINO is a plugin library in a wheel of its own (``onnxruntime-ep-openvino``, the
``edgenn[openvino]`` extra), registered with onnxruntime the first time it is asked for: importing
edgenn never loads it.

Asking for a provider that is not here is an error with the reason, never a silent fall-back to
the CPU; a fall-back happens only when the caller asks for one, and is then reported.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edgenn.errors import ProviderError

CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

PRECISIONS = ("f32", "bf16", "f16")


@dataclass(frozen=True)
class ProviderSpec:
    """One execution provider: how people name it, what onnxruntime calls it, where it comes from."""

    name: str
    ort_name: str
    summary: str
    precisions: tuple[str, ...]  # what it can be asked to compute in; a device may offer fewer
    install: str  # what to do when it is missing
    gpu: bool = False  # inputs and outputs can live in device memory (IO binding)
    plugin_module: str | None = None  # the Python package that carries its plugin library
    default_device: str | None = None
    # Nodes it leaves to the CPU provider mean it refused them (OpenVINO claims every node it can
    # run). GPU providers place shape computations on the CPU on purpose, so theirs are only reported.
    strict_placement: bool = False


PROVIDERS: dict[str, ProviderSpec] = {
    "cpu": ProviderSpec(
        "cpu", CPU, "onnxruntime's own CPU kernels (MLAS)", ("f32",), install="it comes with every onnxruntime"
    ),
    "openvino": ProviderSpec(
        "openvino",
        OPENVINO,
        "Intel OpenVINO as an onnxruntime plugin (CPU, GPU, NPU devices)",
        ("f32", "bf16", "f16"),
        install="pip install 'edgenn[openvino]'",
        plugin_module="onnxruntime_ep_openvino",
        default_device="CPU",
        strict_placement=True,
    ),
    "cuda": ProviderSpec(
        "cuda",
        CUDA,
        "NVIDIA CUDA and cuDNN",
        ("f32",),
        install="pip install onnxruntime-gpu, with the CUDA and cuDNN libraries it was built for",
        gpu=True,
        default_device="0",
    ),
    "tensorrt": ProviderSpec(
        "tensorrt",
        TENSORRT,
        "NVIDIA TensorRT (CUDA takes the nodes it leaves)",
        ("f32", "f16", "bf16"),
        install="pip install onnxruntime-gpu, with the TensorRT, CUDA and cuDNN libraries it was built for",
        gpu=True,
        default_device="0",
    ),
}
ALIASES = {"trt": "tensorrt", "ov": "openvino"}
# What "auto" takes, best first, among the providers present.
AUTO_ORDER = ("tensorrt", "cuda", "openvino", "cpu")
CHOICES = ("auto", *PROVIDERS)
# Nodes a provider does not take go to the next in its chain (onnxruntime places node by node).
CHAINS = {"cpu": (CPU,), "openvino": (OPENVINO, CPU), "cuda": (CUDA, CPU), "tensorrt": (TENSORRT, CUDA, CPU)}


def provider_spec(name: str) -> ProviderSpec:
    """The table entry for a short name, an alias or an onnxruntime name; a usage error otherwise."""
    key = name.strip()
    key = ALIASES.get(key.lower(), key.lower()) if not key.endswith("ExecutionProvider") else key
    for spec in PROVIDERS.values():
        if key in (spec.name, spec.ort_name, spec.ort_name.lower()):
            return spec
    raise ProviderError(
        f"unknown provider {name!r}: use one of {', '.join(CHOICES)} (or an onnxruntime name such as {CPU})"
    )


def check_precision(precision: str) -> str:
    value = precision.strip().lower()
    if value not in PRECISIONS:
        raise ProviderError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return value


# ------------------------------------------------------------------------------------ devices
@dataclass(frozen=True)
class Device:
    """One device a provider can run on here, and the precisions it offers."""

    provider: str  # short name
    name: str  # OpenVINO's device name (CPU, GPU.0, NPU) or the CUDA device id
    kind: str  # cpu | gpu | npu
    description: str  # the hardware, as the provider names it
    precisions: tuple[str, ...]
    handle: Any = field(default=None, compare=False, repr=False)  # onnxruntime's OrtEpDevice, for plugins

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "precisions": list(self.precisions),
        }


def available_providers() -> list[str]:
    """The execution providers this onnxruntime offers, in its own order: the built-in ones, and the
    plugins registered so far (without their meta devices, such as OpenVINOExecutionProvider.AUTO)."""
    import onnxruntime as ort

    return [name for name in ort.get_available_providers() if "." not in name]


def devices(name: str) -> tuple[Device, ...]:
    """The devices a provider offers on this machine; ProviderError saying why where it offers none."""
    spec = provider_spec(name)
    if spec.plugin_module:
        return _plugin_devices(spec)
    if spec.ort_name not in available_providers():
        raise ProviderError(
            f"{spec.ort_name} not available: onnxruntime has only {', '.join(available_providers())}; {spec.install}"
        )
    if spec.name == "cpu":
        return (Device("cpu", "CPU", "cpu", _cpu_model(), spec.precisions),)
    device_id = spec.default_device or "0"
    return (Device(spec.name, device_id, "gpu", f"CUDA device {device_id}", spec.precisions),)


def unavailable_reason(name: str) -> str | None:
    """Why a provider cannot run here, or None where it can."""
    try:
        devices(name)
    except ProviderError as exc:
        return str(exc)
    return None


def registered_plugins() -> list[str]:
    """onnxruntime names of the plugin providers registered in this process that offer a device here
    (none is registered before it is first asked for)."""
    return [PROVIDERS[name].ort_name for name, found in _REGISTERED.items() if found]


def present() -> list[str]:
    """Short names of the providers that can run here, in "auto"'s order of preference."""
    return [name for name in AUTO_ORDER if unavailable_reason(name) is None]


def pick_device(name: str, wanted: str | None) -> Device:
    """The device to open a session on: the one asked for, else the provider's default."""
    spec = provider_spec(name)
    offered = devices(name)
    target = (wanted or spec.default_device or offered[0].name).strip()
    if spec.gpu and not spec.plugin_module and target.isdigit():
        # onnxruntime does not list CUDA devices: any id is taken, and a wrong one fails at session creation
        return replace(offered[0], name=target, description=f"CUDA device {target}")
    for device in offered:
        # "GPU" takes the first GPU (GPU.0); names compare without case
        if device.name.lower() == target.lower() or device.name.split(".")[0].lower() == target.lower():
            return device
    raise ProviderError(f"{spec.name} has no device {target!r} here; it offers {', '.join(d.name for d in offered)}")


@dataclass(frozen=True)
class ProviderStatus:
    """A provider of the table as this machine has it: its devices, or why it has none."""

    spec: ProviderSpec
    devices: tuple[Device, ...]
    reason: str | None  # None where it can run here

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.spec.name,
            "onnxruntime_name": self.spec.ort_name,
            "summary": self.spec.summary,
            "available": self.reason is None,
            "reason": self.reason,
            "devices": [d.to_dict() for d in self.devices],
        }


def survey() -> tuple[ProviderStatus, ...]:
    """Every provider of the table, in "auto"'s order, with the devices it offers here."""
    found = []
    for name in AUTO_ORDER:
        try:
            found.append(ProviderStatus(PROVIDERS[name], devices(name), None))
        except ProviderError as exc:
            found.append(ProviderStatus(PROVIDERS[name], (), str(exc)))
    return tuple(found)


# ------------------------------------------------------------------------------------ plugins
_REGISTERED: dict[str, tuple[Device, ...]] = {}
_REGISTRATION = threading.Lock()


def _plugin_devices(spec: ProviderSpec) -> tuple[Device, ...]:
    with _REGISTRATION:
        if spec.name not in _REGISTERED:
            _REGISTERED[spec.name] = _register(spec)
    found = _REGISTERED[spec.name]
    if not found:
        raise ProviderError(
            f"the {spec.name} plugin offers no device on this machine: it serves Intel CPUs, GPUs and NPUs, and "
            f"this CPU is {_cpu_model()}; run on the cpu provider instead"
        )
    return found


def _register(spec: ProviderSpec) -> tuple[Device, ...]:
    """Load the plugin library into onnxruntime (once per process) and list the devices it offers."""
    import importlib

    import onnxruntime as ort

    try:
        plugin = importlib.import_module(str(spec.plugin_module))
    except ImportError:
        raise ProviderError(f"the {spec.name} provider is not installed: {spec.install}") from None
    if not hasattr(ort, "register_execution_provider_library"):
        raise ProviderError(
            f"onnxruntime {ort.__version__} cannot load provider plugins (1.22 or newer can); upgrade onnxruntime"
        )
    try:
        ort.register_execution_provider_library(spec.ort_name, plugin.get_library_path())
    except Exception as exc:  # a second registration in this process (by someone else) is fine
        if "already registered" not in str(exc).lower():
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ProviderError(f"onnxruntime could not load the {spec.name} plugin library: {first}") from None
    # The plugin also lists meta devices (OpenVINOExecutionProvider.AUTO): only the plain one is used.
    offered = [d for d in ort.get_ep_devices() if d.ep_name == spec.ort_name]
    return tuple(_openvino_device(spec, d) for d in offered)


# OpenVINO's OPTIMIZATION_CAPABILITIES -> edgenn's precision names
_OV_PRECISIONS = {"FP32": "f32", "BF16": "bf16", "FP16": "f16"}


def _openvino_device(spec: ProviderSpec, ep_device: Any) -> Device:
    meta = dict(ep_device.ep_metadata)
    capabilities = meta.get("OPTIMIZATION_CAPABILITIES", "FP32").split()
    precisions = tuple(p for p in PRECISIONS if p in {_OV_PRECISIONS.get(c) for c in capabilities})
    kind = str(ep_device.device.type).rsplit(".", 1)[-1].lower()
    name = meta.get("ov_device") or kind.upper()
    return Device(spec.name, name, kind, meta.get("FULL_DEVICE_NAME", name), precisions or ("f32",), ep_device)


def _cpu_model() -> str:
    from edgenn.runtime.cpuinfo import cpu_model

    return cpu_model()


# ------------------------------------------------------------------------ the older interface
def resolve_providers(choice: str | Sequence[str], fallback: bool = False) -> list[str]:
    """onnxruntime provider names for `choice`, best first (kept for callers of edgenn 0.1).

    `choice` is "auto", a short name or a list of onnxruntime names; see `resolve_choice`.
    """
    name = resolve_choice(choice, fallback)
    return list(CHAINS[name])


def resolve_choice(choice: str | Sequence[str], fallback: bool = False) -> str:
    """The short name of the provider to run on.

    "auto" takes the first present of TensorRT, CUDA, OpenVINO and the CPU. A provider asked for by
    name that cannot run here raises ProviderError with the reason, unless `fallback`: then "cpu".
    A list of onnxruntime names means its first entry (the others are where nodes go that it leaves).
    """
    if not isinstance(choice, str):
        names = [str(p) for p in choice]
        if not names:
            raise ProviderError(f"no provider given: use one of {', '.join(CHOICES)}")
        choice = names[0]
    if choice.strip().lower() == "auto":
        return next(iter(present()), "cpu")
    spec = provider_spec(choice)
    reason = unavailable_reason(spec.name)
    if reason is None:
        return spec.name
    if fallback:
        return "cpu"
    raise ProviderError(reason)


def load_config_json(device: Device, precision: str, threads: int | None) -> str:
    """OpenVINO's per-device settings, as the plugin takes them (its own option names are ignored).

    Keyed by the device kind OpenVINO documents for load_config (CPU, GPU, NPU): the plugin opens the
    session on the one device it was given, so the kind is enough."""
    settings = {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": "1"}
    if threads is not None and device.kind == "cpu":
        settings["INFERENCE_NUM_THREADS"] = str(threads)
    return json.dumps({device.kind.upper(): settings})
