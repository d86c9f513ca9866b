"""The autocast dtype of a training run, with ``train.amp.dtype="auto"`` resolved for its device."""
from typing import Optional, Tuple

import torch

from ..config import AMP_AUTO
from ..utils.hardware import NATIVE_BF16_FLAGS, bf16_is_native, cpu_flags

__all__ = ["resolve_amp_dtype"]


def resolve_amp_dtype(setting: Optional[str], device: str) -> Tuple[Optional[str], str]:
    """
    The autocast dtype that ``train.amp.dtype`` (``setting``) asks for on ``device``, and a line
    saying which and why: "auto" is "bfloat16" where the device computes it natively (a CPU with
    AVX512-BF16 or AMX, a GPU that does not emulate it; read from the hardware, so the same on
    every run of one machine), else None (float32).
    """
    if setting != AMP_AUTO:
        precision = f"{setting} autocast" if setting else "float32"
        return setting, f"Training in {precision} (train.amp.dtype={setting or 'null'})"
    on_cpu = torch.device(device).type == "cpu"
    if bf16_is_native(device):
        flags = " and ".join(sorted(cpu_flags() & set(NATIVE_BF16_FLAGS)))
        how = f"this CPU has {flags}" if on_cpu else f"{device} computes it natively"
        return "bfloat16", f"Training in bfloat16 autocast (train.amp.dtype=auto: {how})"
    why = f"this CPU has no {' or '.join(NATIVE_BF16_FLAGS)}" if on_cpu else f"{device} emulates bfloat16"
    return None, f"Training in float32 (train.amp.dtype=auto: {why})"
