"""
train_net.py as one group of processes however it is launched: on two "machines" of this host,
under torchrun, and --eval-only in several processes. The fast tests check what the launch flags
and torchrun's environment accept; the slow ones train and compare with --num-gpus 2.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import torch
from detectron2.engine.launch import DEFAULT_TIMEOUT as DETECTRON2_TIMEOUT

from conftest import TRAIN_NET, config_path, copypaste_ap, free_port, run_train_net, start_train_net
from yolos_d2.engine.launch import torchrun_place
from yolos_d2.engine.run_lock import LOCK_FILE, RunLock
from yolos_d2.tools import train

QUICKSTART = config_path("quickstart")
# The slow tests start CPU processes talking through gloo, on any host (the launch follows
# train.device): on the CPU, runs that split the work alike end with the same weights, bit for bit.
ON_THE_CPU = "train.device=cpu"
# 8 iterations, checkpoints after iterations 3 and 7.
SHORT_RUN = [ON_THE_CPU, "train.max_iter=8", "train.checkpointer.period=4"]
# Two float32 values computed the same way in two processes differ by a few roundings at most.
FLOAT32_TOLERANCE = {"rtol": 4 * torch.finfo(torch.float32).eps, "atol": 4 * torch.finfo(torch.float32).eps}


def torchrun_environment(rank=0, world_size=2, local_rank=0, local_world_size=2):
    """The variables torchrun sets in one of the processes it starts."""
    numbers = {"RANK": rank, "WORLD_SIZE": world_size, "LOCAL_RANK": local_rank, "LOCAL_WORLD_SIZE": local_world_size}
    return {**{k: str(v) for k, v in numbers.items()}, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def usage_error(capsys, argv):
    """The message of the usage error that train_net.py's main() ends ``argv`` with."""
    with pytest.raises(SystemExit) as info:
        train.main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err.splitlines()[-1].split(": error: ", 1)[1]


def test_torchrun_place_is_read_from_its_variables():
    place = torchrun_place(torchrun_environment(rank=5, world_size=8, local_rank=1, local_world_size=4))
    assert (place.rank, place.local_rank, place.machine_rank, place.num_machines) == (5, 1, 1, 2)
    assert torchrun_place({"PATH": "/usr/bin"}) is None


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"LOCAL_WORLD_SIZE": None, "MASTER_PORT": None}, "but not LOCAL_WORLD_SIZE, MASTER_PORT: start the processes"),
        ({"RANK": "first"}, "RANK=first WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2: each must be a whole number"),
        ({"WORLD_SIZE": "3"}, "RANK=0 WORLD_SIZE=3 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2 do not fit together"),
        ({"RANK": "1"}, "RANK=1 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2 do not fit together"),
    ],
)
def test_torchrun_variables_missing_or_not_fitting_are_refused(change, expected):
    environment = {k: v for k, v in {**torchrun_environment(), **change}.items() if v is not None}
    with pytest.raises(ValueError) as info:
        torchrun_place(environment)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "flag", [["--num-gpus", "2"], ["--num-machines", "1"], ["--machine-rank", "0"], ["--dist-url", "auto"]]
)
def test_launch_flags_under_torchrun_are_refused(monkeypatch, capsys, flag):
    for name, value in torchrun_environment().items():
        monkeypatch.setenv(name, value)
    error = usage_error(capsys, ["--config-file", QUICKSTART, *flag])
    assert error == (
        f"{flag[0]} under torchrun: torchrun's options (--nproc-per-node, --nnodes) say which processes run where; "
        "give this command none of --num-gpus, --num-machines, --machine-rank, --dist-url"
    )


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--num-machines", "2", "--machine-rank", "2"], "--machine-rank 2 with --num-machines 2: must be from 0 to 1"),
        (["--num-machines", "2", "--dist-url", "auto"], "--dist-url auto only works on one machine"),
    ],
)
def test_a_machine_that_cannot_meet_the_others_is_refused_at_start(capsys, tmp_path, flags, expected):
    out = tmp_path / "out"
    assert usage_error(capsys, ["--config-file", QUICKSTART, *flags, f"train.output_dir={out}"]).startswith(expected)
    assert not out.exists()


def test_dist_timeout_is_how_long_the_processes_wait_for_each_other(tiny_config, tmp_path, monkeypatch):
    launched = []
    monkeypatch.setattr(train, "launch", lambda *args, **kwargs: launched.append(kwargs["timeout"]))
    for flags in (["--dist-timeout", "0.5"], []):
        assert train.main(["--config-file", tiny_config, *flags, f"train.output_dir={tmp_path}"]) == 0
    assert launched == [timedelta(seconds=30), DETECTRON2_TIMEOUT]


# Slow: whole runs in subprocesses.


@pytest.fixture(scope="module")
def two_process_run(tiny_config, tmp_path_factory):
    """The output folder of ``--num-gpus 2`` on one machine, whose weights the other launches must reach."""
    out = str(tmp_path_factory.mktemp("two_processes"))
    run_train_net(tiny_config, out, "--num-gpus", "2", *SHORT_RUN, check=True)
    after_4_steps, final = (load_weights(out, name) for name in ("model_0000003.pth", "model_final.pth"))
    assert not all(torch.equal(after_4_steps[k], final[k]) for k in final), "no training happened"
    return out


def load_weights(folder, name="model_final.pth"):
    return torch.load(os.path.join(folder, name), weights_only=True)["model"]


def assert_same_weights(folder, expected_folder):
    """The final weights of ``folder`` are those of ``expected_folder``, bit for bit."""
    weights, expected = load_weights(folder), load_weights(expected_folder)
    assert weights.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(weights[k], expected[k], rtol=0, atol=0, msg=k)


def lock_holder(folder, processes) -> int:
    """The process id in ``folder``'s lock file, once one holds it; fails if one of ``processes`` ends before."""
    path = os.path.join(folder, LOCK_FILE)
    while True:
        try:
            with open(path) as f:
                return json.loads(f.read())["pid"]
        except (FileNotFoundError, ValueError):  # not yet, or being written
            for process in processes:
                assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(0.05)


def refused_while_stopped(holder: int, tiny_config, folder) -> str:
    """
    The output of a run into ``folder`` started while process ``holder`` is stopped (SIGSTOP), so
    that it holds the lock however fast it would otherwise end; it must fail at start.
    """
    os.kill(holder, signal.SIGSTOP)
    try:
        status, log = run_train_net(tiny_config, folder, *SHORT_RUN)
    finally:
        os.kill(holder, signal.SIGCONT)
    assert status == 2, log[-3000:]
    return log


def communicate_all(processes):
    """The outputs of ``processes`` once they end, read side by side: one blocked on a full pipe stops the others."""
    with ThreadPoolExecutor(len(processes)) as pool:
        return list(pool.map(lambda process: process.communicate(timeout=600), processes))


def finish(processes):
    """Wait for ``processes``, which must succeed; their outputs."""
    outputs = communicate_all(processes)
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-6000:]
    return outputs


@pytest.mark.slow
def test_two_machines_train_as_two_processes_of_one(tiny_config, two_process_run, tmp_path):
    """
    Two "machines" of this host, one process each, meeting at a TCP address and sharing one output
    folder, end with the weights of --num-gpus 2 on one machine, bit for bit: the same ranks,
    seeds, shards of the data and thread count. Machine 0's command holds the folder's lock for
    both, so that another run into the folder is refused, naming it; machine 1's process writes
    its log there.
    """
    out = str(tmp_path / "out")
    flags = [*SHORT_RUN, "--num-machines", "2", "--dist-url", f"tcp://127.0.0.1:{free_port()}"]
    machine_1 = start_train_net(tiny_config, out, *flags, "--machine-rank", "1")
    machine_0 = start_train_net(tiny_config, out, *flags, "--machine-rank", "0")
    try:
        holder = lock_holder(out, [machine_0, machine_1])
        assert holder == machine_0.pid
        log = refused_while_stopped(holder, tiny_config, out)
        assert f"is in use by another run: process {holder} " in log
        finish([machine_0, machine_1])
    finally:
        machine_0.kill()  # its processes end with it, on machine 1 too
        machine_1.kill()
    assert_same_weights(out, two_process_run)
    files = os.listdir(out)
    assert {"log.txt", "log.txt.rank1", "model_final.pth"} <= set(files) and LOCK_FILE not in files


def torchrun(config, output_dir, *args) -> subprocess.Popen:
    """``python -m torch.distributed.run --nproc-per-node 2 train_net.py ...``: one thread a process, output kept."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())]
    cmd += [TRAIN_NET, "--config-file", config, *args, f"train.output_dir={output_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads a process's parent in /proc")
def test_torchrun_trains_one_group_as_num_gpus_does(tiny_config, two_process_run, tmp_path):
    """
    Under torchrun with 2 processes, train_net.py forms one group of them (not two runs): the
    weights of --num-gpus 2, bit for bit. Its rank 0, one of the processes torchrun started,
    holds the folder's lock.
    """
    out = str(tmp_path / "out")
    run = torchrun(tiny_config, out, *SHORT_RUN)
    try:
        holder = lock_holder(out, [run])
        assert parent_of(holder) == run.pid
        log = refused_while_stopped(holder, tiny_config, out)
        assert f"is in use by another run: process {holder} " in log
        ((stdout, stderr),) = finish([run])
    finally:
        run.terminate()  # torchrun ends its processes
        run.wait()
    assert (stdout + stderr).count("World size: 2") == 1  # logged by rank 0 alone, of one group of two
    assert_same_weights(out, two_process_run)


@pytest.mark.slow
def test_torchrun_into_a_folder_another_run_holds_ends_every_process(tiny_config, tmp_path):
    """Rank 0 is refused the lock and tells rank 1, so that both end with its message, and nothing is written."""
    out = tmp_path / "out"
    with RunLock(str(out)):
        stdout, stderr = torchrun(tiny_config, str(out), *SHORT_RUN).communicate(timeout=600)
        assert os.listdir(out) == [LOCK_FILE]
    refusal = f"train_net.py: error: train.output_dir={str(out)!r} is in use by another run: process {os.getpid()} "
    assert (stdout + stderr).count(refusal) == 2, stderr[-6000:]


@pytest.mark.slow
def test_eval_only_in_three_processes_evaluates_each_image_once(tiny_config, two_process_run, tmp_path):
    """
    --eval-only --num-gpus 3 on the 16 validation images: each process evaluates its share (6, 5
    and 5 images), the evaluator gathers them, and the AP and the detections (5 per image, each
    image once) are those of one process.
    """
    weights = os.path.join(two_process_run, "model_final.pth")
    logs, detections = {}, {}
    for processes in (1, 3):
        out = tmp_path / f"processes_{processes}"
        _, logs[processes] = run_train_net(
            tiny_config, str(out), "--eval-only", "--weights", weights, "--num-gpus", str(processes), ON_THE_CPU,
            check=True,
        )
        with open(out / "inference" / "coco_instances_results.json") as f:
            detections[processes] = json.load(f)
    assert "World size: 3" in logs[3]
    image_ids = [d["image_id"] for d in detections[3]]
    assert sorted(Counter(image_ids).values()) == [5] * 16
    assert image_ids == [d["image_id"] for d in detections[1]]
    for key in ("score", "bbox"):
        values = [torch.tensor([d[key] for d in detections[n]]) for n in (3, 1)]
        torch.testing.assert_close(*values, **FLOAT32_TOLERANCE, msg=key)
    assert copypaste_ap(logs[3]) == pytest.approx(copypaste_ap(logs[1]), abs=1e-4, nan_ok=True)  # printed to 1e-4


@pytest.mark.slow
def test_a_machine_whose_others_never_come_ends_after_dist_timeout(tiny_config, tmp_path):
    """Machine 0 of 2 alone: its process waits --dist-timeout (3 s) for machine 1; the run ends, its folder free."""
    out = tmp_path / "out"
    url = f"tcp://127.0.0.1:{free_port()}"
    flags = [ON_THE_CPU, "--num-machines", "2", "--machine-rank", "0", "--dist-url", url, "--dist-timeout", "0.05"]
    status, log = run_train_net(tiny_config, str(out), *flags)
    assert status != 0 and f"Process 0 of 2 did not meet the others at {url} within 0:00:03" in log, log[-3000:]
    assert LOCK_FILE not in os.listdir(out)


@pytest.mark.slow
def test_resume_on_machines_whose_folders_hold_other_checkpoints_is_refused(tiny_config, two_process_run, tmp_path):
    """
    --resume on two machines that do not share train.output_dir, machine 1's holding no
    checkpoint: its process would start at iteration 0 and machine 0's at 4. Both end saying so.
    """
    folders = [tmp_path / "machine_0", tmp_path / "machine_1"]
    for folder in folders:
        folder.mkdir()
    shutil.copy(os.path.join(two_process_run, "model_0000003.pth"), folders[0])
    (folders[0] / "last_checkpoint").write_text("model_0000003.pth")
    flags = [*SHORT_RUN, "--resume", "--num-machines", "2", "--dist-url", f"tcp://127.0.0.1:{free_port()}"]
    machines = [start_train_net(tiny_config, str(folders[r]), *flags, "--machine-rank", str(r)) for r in (0, 1)]
    try:
        outputs = communicate_all(machines)
    finally:
        for machine in machines:
            machine.kill()
    for machine, (_, stderr) in zip(machines, outputs):
        assert machine.returncode != 0
        assert "--resume: the processes would start at iterations [4, 0] (by rank)" in stderr, stderr[-3000:]
