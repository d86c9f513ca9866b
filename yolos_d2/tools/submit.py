"""
Submit a training or an evaluation to Slurm, through submitit::

    yolos-submit --config-file configs/yolos_s.py --nodes 2 --gpus-per-node 8 --partition gpu
    yolos-submit --config-file configs/yolos_s.py --eval-only --weights model.pth --nodes 1 --gpus-per-node 1

(also ``python -m yolos_d2.tools.submit``). The job runs the ``yolos-train`` command of the
options and ``KEY=VALUE`` overrides given here (all of ``yolos-train``'s but ``--num-gpus``,
``--num-machines``, ``--machine-rank`` and ``--dist-url``) in one task per GPU on each of
``--nodes`` machines, which form one process group (see :class:`yolos_d2.engine.slurm.TrainingJob`).

The job's folder, ``output/slurm/<config name>[-<hash of the overrides>][-eval]`` unless
``--job-dir`` names one, holds Slurm's output and error files of each task
(``<job id>_<task>_log.out`` and ``.err``) and, unless ``train.output_dir`` is given, the run's
own files. Preempted, or at its time limit (``--timeout``), the job requeues itself and continues
from its last checkpoint as ``--resume`` does; submitit requeues a job that reaches its time limit
3 times at most.

Before it submits, the command checks the config, weights, datasets and the checkpoint to resume as
``yolos-train`` does for ``--nodes`` x ``--gpus-per-node`` processes, but for the device
(``train.device``), which is checked on the machines the job runs on. It needs submitit
(``pip install -e .[slurm]``) and a machine that submits to Slurm.
"""
import argparse
import hashlib
import importlib.util
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..engine.resume import find_resume_point
from . import cli, train

__all__ = ["argument_parser", "executor_parameters", "job_dir", "main", "parse_args", "submit", "train_command"]

logger = logging.getLogger(__name__)

# Where the jobs' folders are, relative to the working directory (as the configs' train.output_dir).
JOB_ROOT = os.path.join("output", "slurm")
# How many hexadecimal digits of the overrides' hash name a job's folder.
HASH_DIGITS = 8

SLURM_OPTION = "--slurm-option"
# sbatch options that yolos-submit sets itself, and from what.
SET_SBATCH_OPTIONS = {
    "partition": "--partition",
    "time": "--timeout",
    "mem": "--mem",
    "account": "--account",
    "qos": "--qos",
    "nodes": "--nodes",
    "gpus-per-node": "--gpus-per-node",
    "ntasks-per-node": "--gpus-per-node (one task per GPU)",
    "cpus-per-task": "--cpus-per-task",
    "job-name": "the job folder's name",
    "output": "--job-dir",
    "error": "--job-dir",
    "signal": "submitit (the signal to requeue on)",
}


def slurm_option(text: str) -> Tuple[str, str]:
    """An argument ``KEY=VALUE``: an sbatch option that yolos-submit does not set, e.g. ``constraint=volta32gb``."""
    key, equals, value = text.partition("=")
    name = key.lstrip("-").replace("_", "-")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, an sbatch option (e.g. constraint=x), got {text!r}")
    if name in SET_SBATCH_OPTIONS:
        raise argparse.ArgumentTypeError(f"{name} is set by {SET_SBATCH_OPTIONS[name]}")
    return name, value


def argument_parser() -> argparse.ArgumentParser:
    """yolos-train's options (see :func:`yolos_d2.tools.train.argument_parser`) and the job's resources."""
    parser = train.argument_parser()
    parser.description = __doc__
    launch_flags = ", ".join(train.LAUNCH_FLAGS.values())
    add_slurm_arguments(parser.add_argument_group(f"the Slurm job (instead of {launch_flags})"))
    return parser


def add_slurm_arguments(group) -> None:
    """The options of the job's resources and folder, added to ``group`` (a parser or an argument group)."""
    group.add_argument("--nodes", type=cli.positive_int, default=1, help="machines (default 1)")
    group.add_argument(
        "--gpus-per-node", type=cli.positive_int, default=8, help="GPUs per machine, a task (process) each (default 8)"
    )
    group.add_argument(
        "--cpus-per-task",
        type=cli.positive_int,
        default=10,
        help="CPUs per task: its data-loader workers (dataloader.*.num_workers) and one more (default 10)",
    )
    group.add_argument("--partition", help="the partition to run in (default: Slurm's)")
    group.add_argument(
        "--timeout",
        type=cli.positive_int,
        default=4320,
        metavar="MINUTES",
        help="the job's time limit, at which it requeues itself (default 4320: 3 days)",
    )
    group.add_argument("--mem", type=cli.positive_number, metavar="GB", help="memory per machine (default: Slurm's)")
    group.add_argument("--account", help="the account charged (default: Slurm's)")
    group.add_argument("--qos", help="the quality of service (default: Slurm's)")
    group.add_argument(
        SLURM_OPTION,
        type=slurm_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. constraint=volta32gb or mail-type=END (repeat for several)",
    )
    group.add_argument(
        "--job-dir",
        metavar="DIR",
        help=f"the job's folder (default {JOB_ROOT}/<config name>[-<hash of the overrides>][-eval])",
    )


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """
    The command line ``argv`` (default ``sys.argv[1:]``) parsed by ``parser``, an
    :func:`argument_parser`, as :func:`yolos_d2.tools.cli.parse_args` parses it (``KEY=VALUE``
    overrides anywhere), except that the ``KEY=VALUE`` after ``--slurm-option`` is its value.
    ``train_argv`` holds the arguments that are yolos-train's: all but the job's options.
    """
    joined = []
    for word in sys.argv[1:] if argv is None else argv:
        if joined and joined[-1] == SLURM_OPTION:
            joined[-1] = f"{SLURM_OPTION}={word}"
        else:
            joined.append(word)
    args = cli.parse_args(parser, joined)
    slurm_options = argparse.ArgumentParser(add_help=False)
    add_slurm_arguments(slurm_options)
    args.train_argv = slurm_options.parse_known_args(joined)[1]
    return args


def job_dir(args: argparse.Namespace) -> str:
    """
    The job's folder, absolute: ``--job-dir``, else ``output/slurm/<config name>`` followed by
    ``-<hash>`` of what changes the config (overrides, ``--weights``, ``--device``) if anything
    does, and ``-eval`` for ``--eval-only``.
    """
    if args.job_dir:
        return os.path.abspath(args.job_dir)
    name = os.path.splitext(os.path.basename(args.config_file))[0]
    flags = [f"{flag}={value}" for flag, value in (("--weights", args.weights), ("--device", args.device)) if value]
    changes = [*args.opts, *flags]
    if changes:
        name += "-" + hashlib.sha256("\n".join(changes).encode()).hexdigest()[:HASH_DIGITS]
    if args.eval_only:
        name += "-eval"
    return os.path.abspath(os.path.join(JOB_ROOT, name))


def train_command(args: argparse.Namespace, folder: str) -> List[str]:
    """The job's ``yolos-train`` arguments: ``train.output_dir`` is ``folder`` unless an override sets it."""
    if any(override.lstrip("+").startswith("train.output_dir=") for override in args.opts):
        return args.train_argv
    return [*args.train_argv, f"train.output_dir={quoted(folder)}"]


def quoted(text: str) -> str:
    """``text`` as a quoted string of the override grammar, which reads spaces, commas and ``=`` in it as they are."""
    return "'" + text.replace("'", "\\'") + "'"


def check_command(command: List[str], nodes: int, gpus_per_node: int) -> None:
    """
    Check ``command`` as ``yolos-train`` checks it at start, for ``nodes`` x ``gpus_per_node``
    processes on machines other than this one: its ``train.device`` is checked there, as the
    config's default device is chosen there. Raises ``ValueError`` naming what is wrong.
    """
    args = cli.parse_args(train.argument_parser(), command)
    args.num_gpus, args.num_machines, args.device = gpus_per_node, nodes, "cpu"
    cfg = train.check_run(args)
    if train.continues_a_run(args):
        find_resume_point(cfg.train.output_dir, train.ema_enabled(cfg))


def executor_parameters(args: argparse.Namespace, folder: str) -> Dict[str, Any]:
    """submitit's ``AutoExecutor`` parameters of the job: one task per GPU; None leaves Slurm's default."""
    return {
        "name": os.path.basename(folder),
        "nodes": args.nodes,
        "tasks_per_node": args.gpus_per_node,
        "gpus_per_node": args.gpus_per_node,
        "cpus_per_task": args.cpus_per_task,
        "timeout_min": args.timeout,
        "mem_gb": args.mem,
        "slurm_partition": args.partition,
        "slurm_account": args.account,
        "slurm_qos": args.qos,
        "slurm_additional_parameters": dict(args.slurm_option),
    }


def submit(argv: Optional[Sequence[str]] = None, cluster: str = "slurm"):
    """
    Submit the job of the command line ``argv`` (default ``sys.argv[1:]``) to ``cluster``, the
    name of a submitit executor: "slurm", or "local" (on this machine). Returns submitit's ``Job``.
    """
    parser = argument_parser()
    args = parse_args(parser, argv)
    launch_flags = train.launch_flags_given(parser, args.train_argv)
    if launch_flags:
        parser.error(f"{' '.join(launch_flags)}: the job runs one process per GPU, --gpus-per-node on each of --nodes")
    if importlib.util.find_spec("submitit") is None:
        parser.error("submitting a job needs submitit: .venv/bin/python -m pip install -e .[slurm]")
    import submitit  # an extra (yolos_d2[slurm]), imported once known to be there
    from submitit.core.utils import FailedJobError

    from ..engine.slurm import TrainingJob

    folder = job_dir(args)
    command = train_command(args, folder)
    with cli.usage_errors(parser):
        check_command(command, args.nodes, args.gpus_per_node)
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as e:  # no Slurm on this machine
        parser.error(str(e))
    executor.update_parameters(**executor_parameters(args, folder))
    try:
        job = executor.submit(TrainingJob(train.main, command))
    except FailedJobError as e:  # sbatch refused the job
        parser.error(f"the job was not submitted: {e}")
    logger.info(f"Submitted job {job.job_id}: {args.nodes} x {args.gpus_per_node} tasks, in {folder}")
    logger.info(f"Output of task 0: {job.paths.stdout}")
    logger.info(f"Errors of task 0: {job.paths.stderr}")
    return job


def main(argv: Optional[Sequence[str]] = None) -> int:
    submit(argv)
    return 0


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
