"""The machine a benchmark ran on: CPU model and the instruction sets that change the figures,
cores, thread settings, library versions and execution providers.

Reads /proc and /sys where they exist (Linux) and degrades to `platform` elsewhere; it imports
neither torch nor onnxruntime's heavy parts (versions come from package metadata).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgenn.runtime.cpuinfo import FLAGS_THAT_MATTER, cpu_flags, cpu_model, field, read_cpuinfo  # noqa: F401
from edgenn.versions import library_versions

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ORT_NUM_THREADS")


@dataclass(frozen=True)
class Environment:
    cpu_model: str
    cpu_flags: tuple[str, ...]  # the ones in FLAGS_THAT_MATTER that this CPU has
    logical_cores: int
    physical_cores: int | None  # None where /proc/cpuinfo does not say
    usable_cores: int  # the CPUs this process may run on (affinity, containers)
    frequency_governor: str | None
    thread_variables: dict[str, str]  # OMP_NUM_THREADS and friends, as set when the bench ran
    os: str
    versions: dict[str, str]  # python, onnxruntime, torch, numpy, ... (those installed)
    providers_available: tuple[str, ...]
    gpus: tuple[str, ...]  # from nvidia-smi where present
    load_average: tuple[float, float, float] | None  # 1, 5, 15 minutes: other work competing for the cores

    @property
    def busy(self) -> bool:
        """More runnable work than usable cores: some timed calls will have waited for a core."""
        return self.load_average is not None and self.load_average[0] > self.usable_cores

    @property
    def has_avx512(self) -> bool:
        return "avx512f" in self.cpu_flags

    @property
    def has_vnni(self) -> bool:
        return "avx512_vnni" in self.cpu_flags or "avx_vnni" in self.cpu_flags

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu_flags"] = list(self.cpu_flags)
        data["providers_available"] = list(self.providers_available)
        data["gpus"] = list(self.gpus)
        data["load_average"] = list(self.load_average) if self.load_average else None
        data["avx512"], data["vnni"] = self.has_avx512, self.has_vnni
        return data


def collect_environment() -> Environment:
    cpuinfo = read_cpuinfo()
    return Environment(
        cpu_model=cpu_model(cpuinfo),
        cpu_flags=cpu_flags(cpuinfo),
        logical_cores=os.cpu_count() or 1,
        physical_cores=physical_cores(cpuinfo),
        usable_cores=_usable_cores(),
        frequency_governor=(_read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").strip() or None),
        thread_variables={k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        os=platform.platform(terse=True),
        versions=library_versions(),
        providers_available=tuple(_providers()),
        gpus=_gpus(),
        load_average=load_average(),
    )


def load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return round(one, 2), round(five, 2), round(fifteen, 2)


def physical_cores(cpuinfo: str) -> int | None:
    """Distinct (physical id, core id) pairs; None where cpuinfo has no such lines (Arm, other OSes)."""
    cores, package = set(), "0"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            cores.add((package, value.strip()))
    return len(cores) or None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _providers() -> list[str]:
    """onnxruntime's built-in providers, then the plugin providers that offer a device here. Plugins are
    listed once something has asked for them: the environment is read without loading any."""
    try:
        from edgenn.runtime.providers import PROVIDERS, available_providers, registered_plugins

        plugins = {spec.ort_name for spec in PROVIDERS.values() if spec.plugin_module}
        return [n for n in available_providers() if n not in plugins] + registered_plugins()
    except ImportError:
        return []


def _gpus() -> tuple[str, ...]:
    tool = shutil.which("nvidia-smi")
    if not tool:
        return ()
    try:
        out = subprocess.run(
            [tool, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.splitlines() if line.strip())


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
