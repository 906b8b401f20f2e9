"""Whether the OpenVINO provider runs in this test process, and why not where it does not.

The plugin (onnxruntime-ep-openvino) offers its devices only where onnxruntime reports an Intel
vendor, although OpenVINO's CPU kernels run on every x86-64 CPU with AVX2. On other CPUs (the AMD
EPYC machines CI may land on) the tests lift that gate in their own process with
tools/openvino_vendor_gate.py, before the plugin is first registered, so that edgenn's OpenVINO
paths run with the real plugin and its real kernels there too. `EDGENN_TEST_OPENVINO_GATE=keep`
leaves the gate shut (the OpenVINO tests then skip, naming the reason). Users are never given
this: on such CPUs edgenn says that the plugin offers no device.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def _intel_cpu() -> bool:
    try:
        return "GenuineIntel" in Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False


def lift() -> str:
    """Lift the gate where needed; returns how OpenVINO stands ("" where nothing needed lifting)."""
    if importlib.util.find_spec("onnxruntime_ep_openvino") is None:
        return "the OpenVINO plugin is not installed (pip install -e '.[openvino]')"
    if _intel_cpu() or os.environ.get("EDGENN_TEST_OPENVINO_GATE") == "keep":
        return ""
    sys.path.insert(0, str(TOOLS))
    try:
        import openvino_vendor_gate

        openvino_vendor_gate.lift()
    except Exception as exc:  # GateError, or an unexpected platform: the tests then skip
        return f"the plugin's vendor gate could not be lifted here ({exc})"
    finally:
        sys.path.remove(str(TOOLS))
    return "lifted"


STATE = lift()


def reason() -> str | None:
    """Why the OpenVINO provider cannot run in this process, or None where it can."""
    from edgenn.runtime.providers import unavailable_reason

    return unavailable_reason("openvino")


def bf16_reason() -> str | None:
    """Why OpenVINO cannot compute in bf16 here (no provider, or a CPU without bf16 instructions), or None."""
    missing = reason()
    if missing is not None:
        return missing
    from edgenn.runtime.providers import pick_device

    device = pick_device("openvino", None)
    if "bf16" in device.precisions:
        return None
    return f"openvino {device.name} ({device.description}) offers only {', '.join(device.precisions)}: no bf16 here"
