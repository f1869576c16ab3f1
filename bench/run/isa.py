"""The CPU: its model name, and the instruction-set extensions that explain its reduced-precision results (no torch
import: records and the report read them)."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The instruction-set extensions that decide how a CPU runs reduced precision: native bf16 needs AVX512-BF16 or AMX
# (x86-64) or the BF16 extension (Arm, "bf16"); fp16 likewise AVX512-FP16/AMX-FP16 (x86-64), or "asimdhp" (Arm).
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "asimdhp", "sve", "bf16")
NATIVE_BF16 = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_isa() -> dict[str, bool]:
    """The ``ISA_FLAGS`` this CPU has, from /proc/cpuinfo (x86 ``flags``, Arm ``Features``); empty where unreadable."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return {flag: flag in have for flag in ISA_FLAGS}
    except OSError:
        pass
    return {}


def bf16_emulation(isa: dict[str, bool], kernels: bool | None) -> str | None:
    """Why bf16 runs emulated on a CPU with these flags and oneDNN bf16 ``kernels``, or None when it runs natively
    (or nothing is known)."""
    if not isa or any(isa.get(f) for f in NATIVE_BF16):
        return None
    if kernels is False:
        return (
            "bf16 emulated: no bf16 kernels for this CPU, convolutions run ATen's reference loop "
            "(aten::_slow_conv2d); no avx512_bf16/amx_bf16"
        )
    return "bf16 emulated: no avx512_bf16/amx_bf16, oneDNN converts to fp32 for the arithmetic"
