"""
Running a YOLOS model for inference in lower precision: int8 weights (PyTorch's dynamic
quantisation of the ``nn.Linear`` layers, on the CPU) or bfloat16 (autocast, where the device
computes it natively). onnxruntime's int8 (:mod:`yolos_d2.export.onnx`) is the other int8
path, for exported files.
"""
import contextlib
import functools
import logging
import time
from typing import Callable, ContextManager

import torch
from torch import nn

from ..utils.hardware import NATIVE_BF16_FLAGS, bf16_is_native

__all__ = [
    "PRECISIONS",
    "InferencePrecision",
    "apply_precision",
    "bf16_is_fast",
    "check_precision",
    "quantize_linear_int8",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")


@functools.lru_cache(maxsize=None)
def bf16_is_fast(device: str) -> bool:
    """
    Whether bfloat16 is worth running on ``device``: a CUDA device that computes it natively (not
    one that emulates it, as a V100 or a T4 does), or a CPU with native bfloat16 instructions on
    which a bfloat16 matrix product, timed against a float32 one, is at least as fast.
    """
    if not bf16_is_native(device):
        return False
    if torch.device(device).type != "cpu":
        return True
    a = torch.randn(512, 512)
    b = a.bfloat16()
    return _fastest_of(lambda: b @ b) <= _fastest_of(lambda: a @ a)


def _fastest_of(fn: Callable[[], object], repeats: int = 5) -> float:
    """The shortest of ``repeats`` timings of ``fn()``, in seconds, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class InferencePrecision:
    """
    The precision a model runs in. Attributes: ``name`` (one of :data:`PRECISIONS`, the one in
    effect) and ``context``, the context to run each forward in (autocast for bf16).
    """

    def __init__(self, name: str, context: Callable[[], ContextManager] = contextlib.nullcontext):
        self.name = name
        self.context = context


def check_precision(precision: str, device: str) -> None:
    """Raise ``ValueError`` for a precision that is not one of :data:`PRECISIONS` or not available on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: must be one of {', '.join(PRECISIONS)}")
    if precision == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"precision 'int8' runs on the CPU only (dynamic quantisation), not on {device!r}")


def quantize_linear_int8(module: nn.Module) -> nn.Module:
    """
    ``module`` with its ``nn.Linear`` layers replaced, in place, by PyTorch's dynamically quantised
    ones (int8 weights, one scale per tensor; each input quantised to uint8 as it comes), packed
    for the kernels of ``torch.backends.quantized.engine``: fbgemm's under its default, "x86".
    """
    return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)


def apply_precision(model: nn.Module, precision: str, device: str) -> InferencePrecision:
    """
    Prepare ``model`` (a :class:`~yolos_d2.modeling.YOLOS` in eval mode, on ``device``) to run in
    ``precision``:

    - "fp32": unchanged;
    - "int8": its detector's ``nn.Linear`` layers quantised (:func:`quantize_linear_int8`), CPU
      only. Which of this and onnxruntime's int8 is faster depends on the CPU, the model and the
      batch (docs/deployment.md); attention stays float32 in both;
    - "bf16": forwards run under bfloat16 autocast where :func:`bf16_is_fast` says the device
      computes it natively; elsewhere a warning says so and the model runs in fp32.

    Returns:
        the precision in effect and the context to run forwards in.

    Raises:
        ValueError for an unknown precision, or int8 on a device other than the CPU.
    """
    check_precision(precision, device)
    device_type = torch.device(device).type
    if precision == "int8":
        quantize_linear_int8(model)
        logger.info(
            "Running in int8: the Linear layers' weights quantised to int8, their inputs per batch "
            f"(quantized engine {torch.backends.quantized.engine})"
        )
        return InferencePrecision("int8")
    if precision == "bf16":
        if not bf16_is_fast(device):
            logger.warning(
                f"precision 'bf16' asked for, but {device!r} does not compute bfloat16 natively "
                f"(no {' or '.join(NATIVE_BF16_FLAGS)} on this CPU, or bfloat16 products slower than float32): "
                "running in fp32"
            )
            return InferencePrecision("fp32")
        logger.info(f"Running in bf16: forwards under bfloat16 autocast on {device}")
        return InferencePrecision("bf16", functools.partial(torch.autocast, device_type, dtype=torch.bfloat16))
    return InferencePrecision("fp32")
