"""What this CPU is called, read from /proc/cpuinfo (x86 and Arm Linux), or platform's guess elsewhere.

In the bottom layer, standard library only: the runtime names the CPU in its errors (a provider
plugin that offers no device here), and edgenn.environment in its benchmark reports.
"""

from __future__ import annotations

import platform
from pathlib import Path

# Flags that change what onnxruntime and PyTorch kernels can use: wide vectors, int8 dot products
# (VNNI: what makes int8 pay off), bf16/fp16 and the AMX tile units; NEON dot product / SVE on Arm.
FLAGS_THAT_MATTER = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "asimdhp",
    "sve",
    "sve2",
    "i8mm",
    "bf16",
)


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The "model name" line of /proc/cpuinfo (x86) or its Arm equivalents; platform's guess otherwise."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    for key in ("model name", "Model", "Hardware", "cpu model"):
        value = field(text, key)
        if value:
            return value
    return platform.processor() or platform.machine() or "unknown"


def field(cpuinfo: str, key: str) -> str:
    """The value of the first `key: value` line of a cpuinfo text, or ""."""
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return ""


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The flags of FLAGS_THAT_MATTER this CPU has."""
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    present = set((field(cpuinfo, "flags") or field(cpuinfo, "Features") or "").split())
    return tuple(f for f in FLAGS_THAT_MATTER if f in present)
