"""For measuring and testing only: let the OpenVINO plugin offer its CPU device on a non-Intel CPU.

The plugin (onnxruntime-ep-openvino 1.8) lists a device only where onnxruntime reports the vendor
as Intel (PCI id 0x8086), although OpenVINO's CPU kernels run on any x86-64 CPU with AVX2 and use
AVX-512 and bf16 where there are (AMD EPYC included). This module points onnxruntime's
`HardwareDevice_VendorId` accessor, in this process only, at a function that answers 0x8086, so
that edgenn's OpenVINO code paths can be tested and measured with the real plugin and kernels on
such machines. edgenn itself never does this: a user on AMD gets a one-line error naming the gate.

    import openvino_vendor_gate; openvino_vendor_gate.lift()   # before the first OpenVINO session
    python tools/openvino_vendor_gate.py bench m.onnx --provider cpu,openvino   # any edgenn command

How: onnxruntime's C API table (OrtApi) is a read-only array of function pointers inside its
Python extension. The accessor is found by its machine code (the OrtHardwareDevice getters are
`mov eax, [rdi+N]; ret`: type at +0, vendor id at +4, device id at +8, in that order in the
table), the page is made writable, and the one pointer is replaced. x86-64 Linux only; anything
unexpected raises GateError and changes nothing.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import sys

INTEL = 0x8086
_ENDBR64 = bytes.fromhex("f30f1efa")
_GET_TYPE = _ENDBR64 + bytes.fromhex("8b07c3")  # mov eax, [rdi]; ret
_GET_VENDOR = _ENDBR64 + bytes.fromhex("8b4704c3")  # mov eax, [rdi+4]; ret
_GET_DEVICE = _ENDBR64 + bytes.fromhex("8b4708c3")  # mov eax, [rdi+8]; ret
_kept: list[mmap.mmap] = []  # the replacement's code page must outlive every caller


class GateError(RuntimeError):
    """The gate could not be lifted here (another platform or onnxruntime build)."""


def lift() -> bool:
    """Make the vendor check pass in this process; True if it was changed now, False if already lifted."""
    if _kept:
        return False
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise GateError(f"only on x86-64 Linux (this is {platform.system()} {platform.machine()})")
    from onnxruntime.capi import onnxruntime_pybind11_state as capi

    slot = _vendor_slot(os.path.basename(capi.__file__))
    code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(b"\xb8" + INTEL.to_bytes(4, "little") + b"\xc3")  # mov eax, 0x8086; ret
    address = ctypes.addressof(ctypes.c_char.from_buffer(code))
    libc = ctypes.CDLL(None, use_errno=True)
    page = slot & ~(mmap.PAGESIZE - 1)
    if libc.mprotect(ctypes.c_void_p(page), ctypes.c_size_t(2 * mmap.PAGESIZE), 3) != 0:  # PROT_READ | PROT_WRITE
        raise GateError(f"mprotect failed (errno {ctypes.get_errno()})")
    ctypes.c_void_p.from_address(slot).value = address
    _kept.append(code)
    return True


def _vendor_slot(library: str) -> int:
    """The address of the OrtApi entry holding HardwareDevice_VendorId."""
    import numpy as np

    segments = _mapped(library)
    text = [(a, b) for a, b, perms in segments if "x" in perms]
    if not text:
        raise GateError(f"{library} is not mapped in this process")

    def code_at(pointer: int, size: int) -> bytes:
        return ctypes.string_at(pointer, size) if any(a <= pointer < b - 16 for a, b in text) else b""

    found = []
    for start, end, perms in segments:
        if "x" in perms or "r" not in perms:
            continue
        words = np.frombuffer(ctypes.string_at(start, end - start), dtype=np.uint64)
        in_text = np.zeros(words.shape, dtype=bool)
        for a, b in text:
            in_text |= (words >= a) & (words < b)
        for i in np.nonzero(in_text[1:-2])[0] + 1:
            if (
                code_at(int(words[i]), 8) == _GET_VENDOR
                and code_at(int(words[i - 1]), 7) == _GET_TYPE
                and code_at(int(words[i + 2]), 8) == _GET_DEVICE
            ):
                found.append(start + 8 * int(i))
    if len(found) != 1:
        raise GateError(f"expected one HardwareDevice_VendorId entry in onnxruntime's API table, found {len(found)}")
    return found[0]


def _mapped(library: str) -> list[tuple[int, int, str]]:
    segments = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and os.path.basename(parts[5]) == library:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                segments.append((start, end, parts[1]))
    return segments


def main(argv: list[str]) -> None:
    """Run an edgenn command (`edgenn ARGS...`) with the gate lifted."""
    lift()
    from edgenn.cli import main as edgenn

    sys.argv = ["edgenn", *argv]
    edgenn()


if __name__ == "__main__":
    main(sys.argv[1:])
