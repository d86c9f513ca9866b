"""
detectron2's ``launch``, extended to several CPU processes for training on the CPU, and the process
group of processes that torchrun started.
"""
import ctypes
import dataclasses
import functools
import logging
import os
import signal
import socket
import sys
from datetime import timedelta
from typing import Callable, Mapping, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.utils import comm

__all__ = [
    "DEFAULT_TIMEOUT",
    "TORCHRUN_VARIABLES",
    "TorchrunPlace",
    "check_machines",
    "join_torchrun_group",
    "launch",
    "torchrun_place",
]

# How long a process waits for the others, to meet them and at each exchange (detectron2's).
DEFAULT_TIMEOUT = timedelta(minutes=30)

# The variables torchrun sets in each process it starts, which init_method "env://" reads.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: tuple = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
    device: Optional[str] = None,
):
    """
    Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes per machine, like
    ``detectron2.engine.launch`` (which it calls when the processes run on ``device`` "cuda",
    the default where CUDA is available). On ``device`` "cpu" (the default without CUDA), the
    processes talk through the gloo backend, each with an equal share of the CPU threads, so the
    distributed path can be run on any machine. On Linux, the processes started end when the
    launching process ends, however it ends (see :func:`_end_with_launcher`). A process waits
    ``timeout`` for the others, to meet them at ``dist_url`` and at each exchange.
    """
    check_machines(num_machines, machine_rank, dist_url)
    world_size = num_machines * num_gpus_per_machine
    if runs_on_cuda(device) or world_size == 1:
        if world_size > 1:  # detectron2 starts processes; with one, it runs main_func here
            main_func = functools.partial(_run_bound_to_launcher, os.getpid(), main_func)
        return detectron2_launch(
            main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args=args, timeout=timeout
        )
    if dist_url == "auto":
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    logging.getLogger(__name__).info(f"Running {num_gpus_per_machine} CPU processes with the gloo backend")
    mp.start_processes(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(os.getpid(), main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        start_method="spawn",
    )


def check_machines(num_machines: int, machine_rank: int, dist_url: Optional[str]) -> None:
    """Raise ``ValueError`` if machine ``machine_rank`` of ``num_machines`` cannot meet the others at ``dist_url``."""
    if not 0 <= machine_rank < num_machines:
        raise ValueError(
            f"--machine-rank {machine_rank} with --num-machines {num_machines}: must be from 0 to {num_machines - 1}"
        )
    if dist_url == "auto" and num_machines != 1:
        raise ValueError(
            "--dist-url auto only works on one machine; give every machine the address of machine 0: tcp://HOST:PORT"
        )


@dataclasses.dataclass(frozen=True)
class TorchrunPlace:
    """The place of this process among those torchrun started: its ranks, of all and of its machine."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def num_machines(self) -> int:
        return self.world_size // self.local_world_size

    @property
    def machine_rank(self) -> int:
        return self.rank // self.local_world_size


def torchrun_place(environ: Mapping[str, str] = os.environ) -> Optional[TorchrunPlace]:
    """
    This process's place among those torchrun (or a job runner that sets the same variables, such
    as submitit's ``TorchDistributedEnvironment().export()``) started, read from
    :data:`TORCHRUN_VARIABLES`; None when none of them is set. Raises ``ValueError`` when some are
    missing or they do not fit detectron2's layout: as many processes on each machine, ranked
    machine after machine.
    """
    given = [name for name in TORCHRUN_VARIABLES if name in environ]
    if not given:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in environ]
    if missing:
        raise ValueError(
            f"The environment sets {', '.join(given)} but not {', '.join(missing)}: start the processes with "
            "torchrun (python -m torch.distributed.run), which sets them all, or unset them"
        )
    values = " ".join(f"{name}={environ[name]}" for name in TORCHRUN_VARIABLES[:4])
    try:
        place = TorchrunPlace(*(int(environ[name]) for name in TORCHRUN_VARIABLES[:4]))
    except ValueError:
        raise ValueError(f"torchrun's variables {values}: each must be a whole number") from None
    if not (
        0 <= place.rank < place.world_size
        and 0 <= place.local_rank < place.local_world_size
        and place.world_size % place.local_world_size == 0
        and place.rank % place.local_world_size == place.local_rank
    ):
        raise ValueError(
            f"torchrun's variables {values} do not fit together: detectron2 needs as many processes on each "
            "machine, ranked machine after machine"
        )
    return place


def runs_on_cuda(device: Optional[str]) -> bool:
    """Whether processes training on ``device`` ("cpu", "cuda"; None: "cuda" where available) use CUDA GPUs."""
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


def join_torchrun_group(
    place: TorchrunPlace, timeout: timedelta = DEFAULT_TIMEOUT, device: Optional[str] = None
) -> None:
    """
    Form the process group of the processes torchrun started, from its variables (init_method
    ``env://``), as :func:`launch` forms that of the processes it starts: NCCL on ``device``
    "cuda", this process on GPU ``LOCAL_RANK``, else gloo; and detectron2's group of this
    machine's processes. Call it in each of those processes instead of :func:`launch`.
    """
    backend = "gloo"
    if runs_on_cuda(device):
        torch.cuda.set_device(place.local_rank)
        backend = "nccl"
    _join_group(backend, "env://", place.world_size, place.rank, place.local_world_size, timeout)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _end_with_launcher(launcher_pid: int) -> None:
    """
    Have Linux kill this process when ``launcher_pid``, the process that started it, ends
    (``prctl(PR_SET_PDEATHSIG)``): a worker whose launcher was killed would otherwise train on
    outside the launcher's run lock, beside the run that takes the folder over. torch's launch
    asks for SIGINT, which a process ignoring it (a command started in the background of a shell
    script) survives; SIGKILL cannot be ignored. Elsewhere, nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        logging.getLogger(__name__).warning(f"This process will not end with its launcher: prctl: {os.strerror(error)}")
    elif os.getppid() != launcher_pid:  # the launcher ended before the prctl
        os.kill(os.getpid(), signal.SIGKILL)


def _run_bound_to_launcher(launcher_pid: int, main_func: Callable, *args):
    """``main_func(*args)`` in a process started by :func:`launch`, which ends with its launcher."""
    _end_with_launcher(launcher_pid)
    return main_func(*args)


def _cpu_worker(
    local_rank, launcher_pid, main_func, world_size, procs_per_machine, machine_rank, dist_url, args, timeout
):
    _end_with_launcher(launcher_pid)
    rank = machine_rank * procs_per_machine + local_rank
    _join_group("gloo", dist_url, world_size, rank, procs_per_machine, timeout)
    torch.set_num_threads(max(1, torch.get_num_threads() // procs_per_machine))
    main_func(*args)


def _join_group(
    backend: str, init_method: str, world_size: int, rank: int, procs_per_machine: int, timeout: timedelta
) -> None:
    """
    Join, as ``rank``, the group of ``world_size`` processes meeting at ``init_method``, and
    detectron2's group of this machine's ``procs_per_machine`` processes; return when all have.
    """
    try:
        dist.init_process_group(backend, init_method=init_method, world_size=world_size, rank=rank, timeout=timeout)
    except dist.DistError as e:
        raise RuntimeError(
            f"Process {rank} of {world_size} did not meet the others at {init_method} within {timeout}: did every "
            f"machine start, with this address? {e}"
        ) from e
    _create_local_process_group(procs_per_machine)
    comm.synchronize()


def _create_local_process_group(procs_per_machine: int) -> None:
    """The group of this machine's processes, which detectron2's ``comm.get_local_rank`` uses."""
    if hasattr(comm, "create_local_process_group"):  # detectron2 after 0.6
        comm.create_local_process_group(procs_per_machine)
        return
    # detectron2 0.6 keeps the group in a module variable, which its own launch sets this way.
    machine_rank = dist.get_rank() // procs_per_machine
    for i in range(dist.get_world_size() // procs_per_machine):
        group = dist.new_group(list(range(i * procs_per_machine, (i + 1) * procs_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
