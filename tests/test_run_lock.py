"""One run per output folder: a second run fails at once naming the first, which finishes undisturbed."""
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import run_train_net, start_train_net
from yolos_d2.engine.run_lock import LOCK_FILE, OutputDirError, RunLock


def read_record(folder):
    with open(os.path.join(folder, LOCK_FILE)) as f:
        return json.load(f)


def test_lock_names_its_holder_and_is_released_at_exit(tmp_path):
    with RunLock(str(tmp_path)):
        record = read_record(tmp_path)
        assert (record["pid"], record["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(OutputDirError) as info:
            RunLock(str(tmp_path)).acquire()
        assert str(info.value).startswith(
            f"train.output_dir={str(tmp_path)!r} is in use by another run: process {os.getpid()} on host "
            f"{socket.gethostname()} (started {record['started']}) holds {tmp_path / LOCK_FILE}."
        )
    assert os.listdir(tmp_path) == []
    with RunLock(str(tmp_path)):
        pass


def test_lock_left_by_a_killed_process_on_this_host_is_taken_over(tmp_path, caplog):
    hold = f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(600)"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time; from yolos_d2.engine.run_lock import RunLock; {hold}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(OutputDirError, match=f"in use by another run: process {holder.pid} on host"):
            RunLock(str(tmp_path)).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert read_record(tmp_path)["pid"] == holder.pid  # the killed process left its file
    with caplog.at_level(logging.WARNING), RunLock(str(tmp_path)):
        assert read_record(tmp_path)["pid"] == os.getpid()
    left_by = f"left by process {holder.pid} on host {socket.gethostname()}"
    assert f"Taking over {tmp_path / LOCK_FILE}, {left_by}" in caplog.text


def test_a_process_forked_by_the_holder_does_not_keep_the_lock(tmp_path, caplog):
    """A data-loader worker (forked) that outlives its killed run leaves the folder to the next run."""
    hold = (
        f"lock = RunLock({str(tmp_path)!r}); lock.acquire(); child = os.fork()\n"
        "if child == 0: time.sleep(600)\n"
        "print(child, flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import os, time\nfrom yolos_d2.engine.run_lock import RunLock\n{hold}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(holder.stdout.readline())
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with caplog.at_level(logging.WARNING), RunLock(str(tmp_path)):
            assert read_record(tmp_path)["pid"] == os.getpid()
        assert f"Taking over {tmp_path / LOCK_FILE}, left by process {holder.pid} on host" in caplog.text
    finally:
        os.kill(child, signal.SIGKILL)


def test_lock_left_on_another_host_is_not_taken_over(tmp_path):
    record = {"pid": 4242, "host": "other-host", "started": "2026-01-01 00:00:00"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(record))
    with pytest.raises(OutputDirError) as info:
        RunLock(str(tmp_path)).acquire()
    assert "process 4242 on host other-host (started 2026-01-01 00:00:00) left" in str(info.value)
    assert "If it does not, delete the file" in str(info.value)
    assert json.loads((tmp_path / LOCK_FILE).read_text()) == record


def test_output_dir_that_is_a_file_is_not_writable(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(OutputDirError, match=r"output_dir='.*out' is not a writable folder: File exists \(EEXIST: "):
        RunLock(str(tmp_path / "out")).acquire()


@pytest.mark.parametrize("failing, error", [("open", errno.EROFS), ("fsync", errno.ENOSPC)])
def test_read_only_or_full_output_dir_is_named(tmp_path, monkeypatch, failing, error):
    def fail(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OutputDirError) as info:
        RunLock(str(tmp_path)).acquire()
    monkeypatch.undo()
    assert str(info.value).startswith(
        f"train.output_dir={str(tmp_path)!r} is not a writable folder: "
        f"{os.strerror(error)} ({errno.errorcode[error]}: "
    )
    assert os.listdir(tmp_path) == []


def wait_for_lock(folder, proc):
    """Until ``proc`` holds the lock of ``folder``."""
    while not (os.path.exists(os.path.join(folder, LOCK_FILE)) and os.path.getsize(os.path.join(folder, LOCK_FILE))):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    assert read_record(folder)["pid"] == proc.pid


@pytest.mark.slow  # a training run and four refused ones, in subprocesses: about 45 s on 2 CPU cores
def test_second_run_on_a_folder_fails_at_once_and_the_first_finishes(tiny_config, tmp_path):  # noqa: F811
    """
    The first run is stopped (SIGSTOP) while it holds the lock, so that the others start while it
    runs whatever the machine's speed: a second run, a --resume, an --eval-only and a two-process
    run of the same folder each fail before starting; then the first one continues and ends with
    its checkpoints.
    """
    out = str(tmp_path / "out")
    first = start_train_net(tiny_config, out, "train.max_iter=12", "train.checkpointer.period=4")
    try:
        wait_for_lock(out, first)
        first.send_signal(signal.SIGSTOP)
        expected = f"train_net.py: error: train.output_dir={out!r} is in use by another run: process {first.pid} "
        weights = tmp_path / "model.pth"
        torch.save({}, weights)
        for args in [(), ("--resume",), ("--eval-only", "--weights", str(weights)), ("--num-gpus", "2")]:
            status, log = run_train_net(tiny_config, out, *args)
            assert status == 2 and expected in log, log[-3000:]
            assert "Command line arguments" not in log  # what detectron2's default_setup logs first
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    files = os.listdir(out)
    assert {"model_0000003.pth", "model_0000007.pth", "model_0000011.pth", "model_final.pth"} <= set(files)
    assert LOCK_FILE not in files
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read() == "model_final.pth"
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["iteration"] == 11
