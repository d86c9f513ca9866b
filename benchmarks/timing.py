"""
Interleaved wall-clock timing shared by the benchmarks, its ``--repeats``, the row a timed thing
gives, and the name of the machine timed.
"""
import argparse
import contextlib
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Type, TypeVar

import torch

from yolos_d2.tools import cli
from yolos_d2.utils.hardware import cpu_flags

__all__ = ["Timing", "add_repeats_argument", "describe_device", "device_sync", "time_interleaved", "timings"]


@dataclass(frozen=True)
class Timing:
    """
    A timed implementation or setting: ``seconds`` per call (a median) and ``ratio``, those seconds
    over the reference's of the same benchmark (1.0 for the reference itself).
    """

    name: str
    seconds: float
    ratio: float


T = TypeVar("T", bound=Timing)


def timings(
    times: Mapping[str, float], reference: str, row: Type[T] = Timing, **columns: Mapping[str, object]
) -> List[T]:
    """
    ``times`` (name -> seconds, as :func:`time_interleaved` gives) as rows of type ``row``, in
    their order, each with its ratio to ``times[reference]`` and its value of every column of
    ``columns`` (field name of ``row`` -> name -> value).
    """
    return [
        row(name, seconds, seconds / times[reference], **{field: values[name] for field, values in columns.items()})
        for name, seconds in times.items()
    ]


def device_sync(device: str) -> Callable[[], None]:
    """What :func:`time_interleaved` calls before each clock reading on ``device``: CUDA's synchronize, or nothing."""
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def describe_device(device: str) -> str:
    """
    What ``device`` ("cpu", "cuda", "cuda:1") is, for the line above a table: the GPU's name,
    memory and compute capability, or the CPU's model name and torch's threads.
    """
    if device.startswith("cuda"):
        gpu = torch.cuda.get_device_properties(device)
        return f"{gpu.name} ({gpu.total_memory / 2**30:.0f} GiB, compute capability {gpu.major}.{gpu.minor})"
    threads = torch.get_num_threads()
    return f"{_cpu_description()}, {threads} thread{'s' if threads > 1 else ''}"


# The CPU flags that decide which kernels run: vector width, native bfloat16, int8 dot products.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8")


def _cpu_description() -> str:
    """The CPU's model name and which of :data:`SPEED_FLAGS` it has."""
    model = platform.processor() or "CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    present = [flag for flag in SPEED_FLAGS if flag in cpu_flags()]
    return f"{model} ({' '.join(present) or 'none of ' + ', '.join(SPEED_FLAGS)})"


def time_interleaved(
    fns: Dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2, sync: Callable[[], None] = lambda: None
) -> Dict[str, float]:
    """
    Median seconds per call of each function, timed in rounds that call every function once, so
    that a slow spell of the machine (another process, frequency changes) hits all of them alike.

    Args:
        fns: name -> function to time.
        repeats: timed rounds.
        warmup: untimed rounds first (allocator, kernel selection, caches).
        sync: called before each clock reading, e.g. ``torch.cuda.synchronize``.
    """
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for round_index in range(warmup + repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if round_index >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def add_repeats_argument(parser: argparse.ArgumentParser, default: int) -> None:
    """``--repeats``: the timed rounds of :func:`time_interleaved`, a whole number of at least 1."""
    parser.add_argument(
        "--repeats",
        type=cli.positive_int,
        default=default,
        metavar="N",
        help="timed rounds after the warm-up, each calling every timed thing once; the tables give the median "
        f"(default {default})",
    )
