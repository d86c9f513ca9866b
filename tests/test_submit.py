"""
yolos-submit: the job's options as submitit and sbatch receive them, its folder, the checks before
it is submitted, and jobs run by submitit's local executor, one of them preempted, that end with
the weights of a run never stopped.
"""
import os
import re
import shlex
import signal
import time

import pytest
import torch

from conftest import config_path, run_train_net
from yolos_d2.checkpoint import load_weights_file
from yolos_d2.config import load_config
from yolos_d2.engine.slurm import TrainingJob
from yolos_d2.tools import cli, submit, train

JOB_ID = "4242"


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """
    Slurm's commands on PATH: ``srun``, and ``sbatch``, which keeps the script it is given in the
    returned path and answers job 4242, or refuses the partition "nope" as Slurm does.
    """
    bin_dir, script = tmp_path / "bin", tmp_path / "sbatch_script"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\n"
        "if grep -q -- '--partition=nope' \"$1\"; then\n"
        "  echo 'sbatch: error: invalid partition specified: nope' >&2; exit 1\n"
        "fi\n"
        f'cp "$1" {shlex.quote(str(script))}\n'
        f"echo 'Submitted batch job {JOB_ID}'\n"
    )
    for command in bin_dir.iterdir():
        command.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def parse(*argv: str):
    return submit.parse_args(submit.argument_parser(), list(argv))


RESOURCES = [
    "--nodes", "2", "--gpus-per-node", "2", "--cpus-per-task", "6", "--partition", "gpu", "--timeout", "90",
    "--mem", "64", "--account", "vision", "--qos", "high",
    "--slurm-option", "constraint=volta32gb", "--slurm-option=mail-type=END",
]  # fmt: skip


def test_options_map_to_submitits_parameters():
    args = parse("--config-file", "configs/yolos_s.py", *RESOURCES)
    assert submit.executor_parameters(args, "/jobs/yolos_s") == {
        "name": "yolos_s",
        "nodes": 2,
        "tasks_per_node": 2,  # one per GPU
        "gpus_per_node": 2,
        "cpus_per_task": 6,
        "timeout_min": 90,
        "mem_gb": 64.0,
        "slurm_partition": "gpu",
        "slurm_account": "vision",
        "slurm_qos": "high",
        "slurm_additional_parameters": {"constraint": "volta32gb", "mail-type": "END"},
    }
    defaults = submit.executor_parameters(parse("--config-file", "configs/yolos_s.py"), "/jobs/yolos_s")
    assert {k: v for k, v in defaults.items() if v is not None} == {
        "name": "yolos_s",
        "nodes": 1,
        "tasks_per_node": 8,
        "gpus_per_node": 8,
        "cpus_per_task": 10,
        "timeout_min": 4320,
        "slurm_additional_parameters": {},
    }


def test_the_job_reaches_sbatch_with_its_options(tiny_config, fake_slurm, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="yolos_d2.tools.submit"):
        job = submit.submit(["--config-file", tiny_config, *RESOURCES, "train.max_iter=7"])
    (folder,) = (tmp_path / "output" / "slurm").iterdir()
    assert re.fullmatch(r"tiny-[0-9a-f]{8}", folder.name)
    assert job.job_id == JOB_ID
    sbatch_lines = set(fake_slurm.read_text().splitlines())
    expected = [
        "--nodes=2", "--ntasks-per-node=2", "--gpus-per-node=2", "--cpus-per-task=6", "--partition=gpu",
        "--time=90", "--mem=64GB", "--account=vision", "--qos=high", "--constraint=volta32gb", "--mail-type=END",
        f"--job-name={folder.name}", f"--output={folder}/%j_0_log.out", f"--error={folder}/%j_0_log.err",
    ]  # fmt: skip
    assert {f"#SBATCH {line}" for line in expected} <= sbatch_lines
    assert [line for line in sbatch_lines if line.startswith("#SBATCH --signal=")]  # preemption and timeout warn
    assert f"Submitted job {JOB_ID}" in caplog.text
    assert f"{folder}/{JOB_ID}_0_log.out" in caplog.text and f"{folder}/{JOB_ID}_0_log.err" in caplog.text


def test_the_job_folder_is_named_from_the_config_and_what_changes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def folder(*argv):
        return submit.job_dir(parse("--config-file", "configs/yolos_s.py", *argv))

    root = tmp_path / "output" / "slurm"
    assert folder() == str(root / "yolos_s") == folder("--nodes", "4", "--partition", "gpu")  # resources don't
    changed = folder("train.max_iter=10", "train.seed=1")
    assert re.fullmatch(r"yolos_s-[0-9a-f]{8}", os.path.basename(changed)) and os.path.dirname(changed) == str(root)
    assert folder("train.max_iter=10", "--nodes", "2", "train.seed=1") == changed
    others = [
        folder("train.max_iter=11", "train.seed=1"),
        folder("train.max_iter=10", "train.seed=1", "--weights", "w.pth"),
        folder("train.max_iter=10", "train.seed=1", "--device", "cpu"),
        folder("train.max_iter=10", "train.seed=1", "--eval-only"),
    ]
    assert len({changed, *others}) == 5
    assert folder("--eval-only", "--weights", "w.pth").endswith("-eval")
    assert folder("train.seed=1", "--job-dir", "jobs/a") == str(tmp_path / "jobs" / "a")


@pytest.mark.parametrize("output_dir_given", [False, True])
def test_the_run_writes_into_the_job_folder_unless_train_output_dir_is_given(tmp_path, output_dir_given):
    folder = tmp_path / "a job, it's = 1"  # what the override grammar reads, quoted
    given = [f"train.output_dir={tmp_path / 'out'}"] if output_dir_given else []
    args = parse(
        "--config-file", config_path("quickstart"), "--job-dir", str(folder), *RESOURCES, "train.seed=3", *given
    )
    command = submit.train_command(args, submit.job_dir(args))
    train_args = cli.parse_args(train.argument_parser(), command)  # no option of the job's left
    assert (train_args.config_file, train_args.opts[0]) == (config_path("quickstart"), "train.seed=3")
    cfg = load_config(train_args.config_file, train_args.opts)
    assert cfg.train.output_dir == str(tmp_path / "out" if output_dir_given else folder)
    assert cfg.train.seed == 3


def test_a_requeued_job_resumes():
    job = TrainingJob(train.main, ["--config-file", "c.py", "train.seed=1"])
    requeued = job.checkpoint().function
    assert requeued.main is train.main
    assert requeued.argv == ["--config-file", "c.py", "train.seed=1", "--resume"]
    assert requeued.checkpoint().function.argv == requeued.argv


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train.max_iters=1"], "Unknown config key 'train.max_iters'"),
        (["--nodes", "3", "--gpus-per-node", "1"], "total_batch_size=4 is not divisible by the 3 processes"),
        (["--eval-only"], "--eval-only needs the weights"),
        (["--weights", "missing.pth"], "train.init_checkpoint='missing.pth': file not found"),
        (["--num-gpus", "2"], "--num-gpus: the job runs one process per GPU"),
        (["--slurm-option", "partition=x"], "partition is set by --partition"),
        (["--slurm-option", "constraint"], "must be KEY=VALUE"),
        (["--gpus-per-node", "0"], "must be at least 1, got 0"),
        (["--partition", "nope"], "the job was not submitted: sbatch: error: invalid partition specified: nope"),
    ],
)
def test_a_mistake_ends_the_command_before_the_job_is_submitted(
    tiny_config, fake_slurm, tmp_path, monkeypatch, capsys, argv, message
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        submit.main(["--config-file", tiny_config, "--nodes", "1", "--gpus-per-node", "2", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not fake_slurm.exists()
    if "sbatch" not in message:
        assert not (tmp_path / "output").exists()


def test_without_slurm_the_command_says_so(tiny_config, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(SystemExit) as exit_info:
        submit.main(["--config-file", tiny_config, "--nodes", "1", "--gpus-per-node", "2"])
    assert exit_info.value.code == 2
    assert 'Could not detect "srun"' in capsys.readouterr().err
    assert not (tmp_path / "output").exists()


def wait_for(path, job) -> None:
    """Return once ``path`` exists; fail, showing the job's errors, if the job ends before."""
    while not path.exists():
        assert not job.done(), f"the job ended before {path} was written:\n{job.stderr()}"
        time.sleep(0.02)


def preempt(job) -> None:
    """Signal the tasks of a job of submitit's local executor as Slurm signals them before it preempts the job."""
    controller = int(job.job_id)  # the local executor's id: the process that runs the tasks
    with open(f"/proc/{controller}/task/{controller}/children") as f:
        tasks = [int(pid) for pid in f.read().split()]
    assert len(tasks) == job.num_tasks
    for pid in tasks:
        os.kill(pid, signal.SIGUSR2)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds the job's processes in /proc")
def test_a_preempted_job_resumes_to_the_weights_of_a_run_never_stopped(tiny_config, tmp_path):
    # Iterations of 2 CPU processes: the job runs for seconds after its first checkpoint.
    overrides = ["train.max_iter=60", "train.checkpointer.period=10", "train.eval_period=0", "train.num_threads=1"]
    run_train_net(tiny_config, str(tmp_path / "never_stopped"), "--num-gpus", "2", *overrides, check=True)
    folder = tmp_path / "job"
    job = submit.submit(
        ["--config-file", tiny_config, "--nodes", "1", "--gpus-per-node", "2", "--job-dir", str(folder), *overrides],
        cluster="local",
    )
    try:
        wait_for(folder / "last_checkpoint", job)
        preempt(job)
        assert job.results() == [0, 0], job.stderr()
    finally:
        job.cancel()  # if a failure left it running
    log = (folder / "log.txt").read_text()
    assert "World size: 2" in log
    first, resumed = (int(i) for i in re.findall(r"Starting training from iteration (\d+)", log))
    assert first == 0 and resumed > 0 and resumed % 10 == 0  # after a checkpoint
    expected = load_weights_file(str(tmp_path / "never_stopped" / "model_final.pth"))
    actual = load_weights_file(str(folder / "model_final.pth"))
    assert actual["iteration"] == expected["iteration"]
    assert actual["model"].keys() == expected["model"].keys()
    for key, value in expected["model"].items():
        assert torch.equal(actual["model"][key], value), key
