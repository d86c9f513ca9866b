"""Interleaved wall-clock timing shared by the benchmarks."""
import statistics
import time
from typing import Callable, Dict, List

__all__ = ["time_interleaved"]


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
