"""The processes that yolos_d2.engine.launch starts end with their launcher, however it ends."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

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
