"""Which onnxruntime execution providers to run on: "auto", a short name, or ORT's own names.

Asking for a provider that is not installed is an error, never a silent fall-back to the CPU;
a fall-back happens only when the caller asks for one (``fallback=True``).
"""

from __future__ import annotations

from collections.abc import Sequence

from edgenn.errors import ProviderError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

# Best first: what "auto" picks among the available ones.
PREFERENCE = (TENSORRT, CUDA, CPU)

# Short names people type -> the chain of ORT providers they mean. A GPU provider keeps the
# providers below it so nodes it cannot run still have somewhere to go (ORT assigns per node).
SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "cpu": (CPU,),
    "cuda": (CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),
    "trt": (TENSORRT, CUDA, CPU),
}

CHOICES = ("auto", *SHORT_NAMES)


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers, in ORT's own order."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(choice: str | Sequence[str], fallback: bool = False) -> list[str]:
    """ORT provider names to open a session with, best first.

    `choice` is "auto" (TensorRT, CUDA, then CPU, among those available), "cpu", "cuda",
    "tensorrt", or a list of ORT provider names. A provider that is asked for by name but is not
    available raises ProviderError, unless `fallback` is true: then it is skipped, and the chain
    ends with the CPU.
    """
    available = available_providers()
    if isinstance(choice, str):
        key = choice.strip().lower()
        if key == "auto":
            return [p for p in PREFERENCE if p in available] or [CPU]
        if key in SHORT_NAMES:
            wanted = list(SHORT_NAMES[key])
        elif choice.strip().endswith("ExecutionProvider"):
            wanted = [choice.strip()]
        else:
            raise ProviderError(
                f"unknown provider {choice!r}: use one of {', '.join(CHOICES)} or an onnxruntime "
                f"provider name such as {CPU}"
            )
        # The asked-for provider is the first of its chain; the rest are helpers, used if present.
        asked = wanted[:1]
    else:
        wanted = [str(p) for p in choice]
        if not wanted:
            raise ProviderError(f"no provider given: use one of {', '.join(CHOICES)} or a list of ORT names")
        asked = wanted
    missing = [p for p in asked if p not in available]
    if missing and not fallback:
        raise ProviderError(
            f"provider {', '.join(missing)} not available: installed providers are "
            f"{', '.join(available)}; install onnxruntime-gpu (with CUDA / TensorRT libraries) for GPU "
            f"providers, or choose --provider auto / cpu"
        )
    chosen = [p for p in wanted if p in available]
    if fallback and CPU not in chosen and CPU in available:
        chosen.append(CPU)
    return chosen or [CPU]
