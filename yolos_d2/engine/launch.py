"""detectron2's ``launch``, extended to several CPU processes when there is no GPU."""
import ctypes
import functools
import logging
import os
import signal
import socket
import sys
from datetime import timedelta
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as detectron2_launch
from detectron2.utils import comm

__all__ = ["DEFAULT_TIMEOUT", "launch"]

DEFAULT_TIMEOUT = timedelta(minutes=30)


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: tuple = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
):
    """
    Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes per machine, like
    ``detectron2.engine.launch`` (which it calls when CUDA is available). Without CUDA, the
    processes run on the CPU and talk through the gloo backend, each with an equal share of the
    CPU threads, so the distributed path can be run on any machine. On Linux, the processes
    started end when the launching process ends, however it ends (see :func:`_end_with_launcher`).
    """
    world_size = num_machines * num_gpus_per_machine
    if torch.cuda.is_available() or world_size == 1:
        if world_size > 1:  # detectron2 starts processes; with one, it runs main_func here
            main_func = functools.partial(_run_bound_to_launcher, os.getpid(), main_func)
        return detectron2_launch(
            main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args=args, timeout=timeout
        )
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; give the URL of machine 0")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    logging.getLogger(__name__).info(f"No CUDA: running {num_gpus_per_machine} CPU processes with the gloo backend")
    mp.start_processes(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(os.getpid(), main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        start_method="spawn",
    )


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
    dist.init_process_group("gloo", init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout)
    _create_local_process_group(procs_per_machine)
    torch.set_num_threads(max(1, torch.get_num_threads() // procs_per_machine))
    comm.synchronize()
    main_func(*args)


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
