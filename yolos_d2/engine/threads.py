"""
How many intra-op threads a CPU process should run torch with.

torch starts as many OpenMP threads as the machine has cores. Each parallel operation then waits
for all of them at its end, and an idle OpenMP thread spins for a while before it sleeps. When
other processes keep some of those cores busy, a thread that the scheduler has paused holds up
every operation, and the spinning threads take time from the running ones: a training step of
the quick start becomes several times slower than with one thread. So the count is chosen from
the CPUs this process may use (its affinity mask and cgroup quota) less those that other
processes keep busy, measured over a short interval.

The count also changes results: a parallel reduction adds its terms in an order that depends
on how many threads share it, so float32 weights trained with 1 and 2 threads drift apart. A
seeded run therefore does not measure the load (:func:`resolve_num_threads`), and a resumed run
takes the count its checkpoint records.
"""
import logging
import os
import time
from typing import Dict, Optional, Set, Tuple

import torch

__all__ = [
    "available_cpus",
    "busy_cpus_elsewhere",
    "choose_num_threads",
    "resolve_num_threads",
    "set_num_threads",
]

logger = logging.getLogger(__name__)


def available_cpus() -> float:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (may be fractional)."""
    count = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            count = min(count, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return count


def _cpu_busy_ticks(cpus: Set[int]) -> Dict[int, Tuple[int, int]]:
    """(busy, total) clock ticks since boot of each of ``cpus``, from /proc/stat."""
    ticks = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                numbers = [int(v) for v in values[:8]]
                idle = numbers[3] + numbers[4]  # idle, iowait
                ticks[int(name[3:])] = (sum(numbers) - idle, sum(numbers))
    return ticks


def _own_cpu_ticks() -> int:
    """User and system clock ticks this process has used (its threads included)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def busy_cpus_elsewhere(interval: float = 0.3) -> Optional[float]:
    """
    How many of this process's CPUs other processes kept busy over ``interval`` seconds (e.g. 1.0:
    one core's worth), from /proc/stat less this process's own time; None where /proc is not there.
    """
    try:
        cpus = os.sched_getaffinity(0)
        before, own_before = _cpu_busy_ticks(cpus), _own_cpu_ticks()
        time.sleep(interval)
        after, own_after = _cpu_busy_ticks(cpus), _own_cpu_ticks()
    except (OSError, AttributeError, ValueError, IndexError):
        return None
    busy = sum(after[c][0] - before[c][0] for c in after)
    total = sum(after[c][1] - before[c][1] for c in after)
    if total <= 0:
        return None
    return max(0.0, (busy - (own_after - own_before)) / total * len(after))


def choose_num_threads(processes: int = 1, busy: Optional[float] = None, measure: bool = True) -> Tuple[int, str]:
    """
    Intra-op threads for each of ``processes`` processes sharing this machine's CPUs, and the
    reason in words: the CPUs available (:func:`available_cpus`) less the busy ones
    (:func:`busy_cpus_elsewhere`, measured unless ``busy`` is given or ``measure`` is False),
    rounded, shared, at least 1.
    """
    cpus = available_cpus()
    if busy is None and measure:
        busy = busy_cpus_elsewhere()
    free = cpus if busy is None else cpus - busy
    threads = max(1, int(free / processes + 0.5))
    if busy is not None:
        load = f"{busy:.1f} busy with other processes"
    else:
        load = "load not measured" if measure else "load not measured, so that the count is the same in every run"
    share = f", shared by {processes} processes" if processes > 1 else ""
    return threads, f"{cpus:g} CPUs available to this process, {load}{share}"


def resolve_num_threads(
    setting, processes: int = 1, *, recorded: Optional[int] = None, measure_load: bool = True
) -> Tuple[int, str]:
    """
    The intra-op threads a config setting (``train.num_threads``) asks for, and why:

    - a number: that number (the reason says so when it is not ``recorded``);
    - "auto" with ``recorded``, the count of the checkpoint a run resumes: that count, so that the
      resumed run computes what the interrupted one would have;
    - "auto" with the OMP_NUM_THREADS environment variable set: torch's count, which it sets;
    - "auto": :func:`choose_num_threads`, from the load of the other processes if
      ``measure_load`` (pass False for a seeded run: the load differs from one run to the next).

    Resolve it in the launching process, before its workers start and keep CPUs busy.
    """
    if setting != "auto":
        if recorded is None or int(setting) == recorded:
            return int(setting), "train.num_threads"
        return int(setting), (
            f"train.num_threads; the checkpoint resumed was computed with {recorded}, so the results differ from "
            "those of the run it continues in float rounding"
        )
    if recorded is not None:
        return recorded, "recorded in the checkpoint resumed"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    return choose_num_threads(processes, measure=measure_load)


def set_num_threads(threads: int, why: str) -> None:
    """``torch.set_num_threads(threads)``, and a log line saying how many and why."""
    torch.set_num_threads(threads)
    logger.info(f"Intra-op threads: {threads} ({why})")
