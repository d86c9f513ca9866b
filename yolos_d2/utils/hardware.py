"""What the machine computes natively: CPU instruction-set flags and bfloat16 support."""
import functools
import platform
from typing import FrozenSet

import torch

__all__ = ["NATIVE_BF16_FLAGS", "bf16_is_native", "cpu_flags", "cpu_has_native_bf16"]

# CPU flags (Linux /proc/cpuinfo) of instructions that compute bfloat16 products natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> FrozenSet[str]:
    """The instruction-set flags of this CPU (``avx2``, ``amx_bf16``, ...) from /proc/cpuinfo; empty off Linux."""
    if platform.system() != "Linux":
        return frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has AVX512-BF16 or AMX-BF16."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def bf16_is_native(device: str) -> bool:
    """
    Whether ``device`` ("cpu", "cuda", "cuda:1") computes bfloat16 products natively: a CPU with
    :data:`NATIVE_BF16_FLAGS`, or a CUDA GPU that does not emulate them (a V100 or a T4 does).
    Read from the hardware only, so the same on every run of one machine.
    """
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.device(device).type == "cpu" and cpu_has_native_bf16()
