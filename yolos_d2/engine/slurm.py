"""
Slurm jobs through submitit: :class:`TrainingJob` runs a ``yolos-train`` command in each task of a
job, one task per GPU, and requeues itself to resume when it is preempted or reaches its time limit.

This module needs submitit (``pip install -e .[slurm]``); ``yolos_d2.engine`` does not import it.
"""
from typing import Callable, List, Sequence

import submitit

__all__ = ["RESUME", "TrainingJob"]

# The flag of yolos-train that continues the run of train.output_dir from its last checkpoint.
RESUME = "--resume"


class TrainingJob(submitit.helpers.Checkpointable):
    """
    A submitit job whose tasks each run ``main(argv)``: ``yolos_d2.tools.train.main`` and a
    ``yolos-train`` command line. Each task first sets the variables torchrun would set from
    submitit's view of the job (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``;
    ``MASTER_ADDR``, the job's first node, and ``MASTER_PORT``, derived from the job id), from
    which ``main`` runs the task as one process of the job's process group.

    Preempted or at its time limit, Slurm signals the job; submitit then calls :meth:`checkpoint`
    in task 0 and requeues the job it returns, whose tasks continue from the last checkpoint of
    ``train.output_dir``. The iterations since that checkpoint are computed again, as
    ``--resume`` computes them, to the same weights as a job never stopped.
    """

    def __init__(self, main: Callable[[List[str]], int], argv: Sequence[str]):
        self.main = main
        self.argv = list(argv)

    def __call__(self) -> int:
        # Each task sees all the GPUs of its node and takes GPU LOCAL_RANK, as under torchrun.
        # Variables of the submitting shell (Slurm passes its environment on) give way to the job's.
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        return self.main(self.argv)

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """
        The job to requeue: the same command with ``--resume`` (which an evaluation,
        ``--eval-only``, ignores: it starts again). Nothing is saved here: the job resumes from
        the last checkpoint its training saved (every ``train.checkpointer.period`` iterations).
        """
        argv = self.argv if RESUME in self.argv else [*self.argv, RESUME]
        return submitit.helpers.DelayedSubmission(TrainingJob(self.main, argv))
