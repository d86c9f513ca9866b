"""
The processes that yolos_d2.engine.launch starts end with their launcher, however it ends, and
with a process of another machine that fails.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import free_port

# Three python processes that import torch, joined by gloo: about 30 s on 2 loaded CPU cores (-m slow).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's"),
    pytest.mark.skipif(torch.cuda.is_available(), reason="two CPU processes: the launch path without CUDA"),
]

LAUNCHER = textwrap.dedent(
    """
    import os, signal, sys, time
    from yolos_d2.engine import launch

    # As in a command started in the background of a shell script: its processes ignore SIGINT,
    # the signal torch's own launch has them sent when their launcher ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def work(folder):
        open(os.path.join(folder, f"{os.getpid()}.pid"), "w").close()
        time.sleep(600)

    if __name__ == "__main__":
        launch(work, 2, dist_url="auto", args=(sys.argv[1],))
    """
)


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, what: str, limit_s: float = 300) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if it still does not after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_killing_the_launcher_ends_its_workers(tmp_path):
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    workers = tmp_path / "workers"
    workers.mkdir()
    launcher = subprocess.Popen([sys.executable, str(script), str(workers)])
    pids = []
    try:
        wait_until(lambda: len(os.listdir(workers)) == 2 or launcher.poll() is not None, "the workers never started")
        assert launcher.poll() is None, "the launcher ended"
        pids = [int(name.split(".")[0]) for name in os.listdir(workers)]
        assert all(running(pid) for pid in pids)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        wait_until(lambda: not any(map(running, pids)), "a worker outlived its killed launcher", limit_s=60)
    finally:
        launcher.kill()
        launcher.wait()
        for pid in filter(running, pids):
            os.kill(pid, signal.SIGKILL)


# Two machines of one process each; the process of machine 1 fails as it starts its work.
FAILING_MACHINE = textwrap.dedent(
    """
    import sys
    import torch.distributed as dist
    from yolos_d2.engine import launch

    def work():
        if dist.get_rank() == 1:
            raise RuntimeError("rank 1 fails")
        dist.barrier()  # waits for rank 1
        print("rank 0 passed the barrier")

    if __name__ == "__main__":
        launch(work, 1, num_machines=2, machine_rank=int(sys.argv[1]), dist_url=sys.argv[2])
    """
)


def test_a_process_failing_on_one_machine_ends_those_of_the_others(tmp_path):
    """
    Rank 1 raises once the processes have met; rank 0, on the other machine, waiting for it at an
    exchange, fails at once (gloo closes the connections of a process that ends) instead of
    waiting for the group's timeout of 30 minutes, far beyond the 5 minutes allowed here.
    """
    script = tmp_path / "machine.py"
    script.write_text(FAILING_MACHINE)
    url = f"tcp://127.0.0.1:{free_port()}"
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    machines = [subprocess.Popen([sys.executable, str(script), str(rank), url], **output) for rank in (0, 1)]
    try:
        (stdout_0, _), (_, stderr_1) = (machine.communicate(timeout=300) for machine in machines)
    finally:
        for machine in machines:
            machine.kill()
    assert "RuntimeError: rank 1 fails" in stderr_1
    assert machines[0].returncode != 0 and "rank 0 passed the barrier" not in stdout_0
