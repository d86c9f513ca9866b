"""The checkpoint that ``--resume`` continues from, read and checked before a run starts."""
import os
from typing import NamedTuple, Optional

from ..checkpoint import load_weights_file
from ..checkpoint.checkpointer import check_checkpoint_finite, ema_weights_of

__all__ = ["LAST_CHECKPOINT", "ResumeError", "ResumePoint", "find_resume_point", "has_last_checkpoint"]

# detectron2's tag file, naming the last checkpoint of a folder.
LAST_CHECKPOINT = "last_checkpoint"


class ResumeError(ValueError):
    """``--resume`` cannot continue from the last checkpoint of ``train.output_dir``; the message says why."""


class ResumePoint(NamedTuple):
    """The checkpoint a run resumes from."""

    path: str
    iteration: int  # the last iteration it holds the result of
    num_threads: Optional[int]  # the intra-op threads that computed it; None in checkpoints of older versions


def has_last_checkpoint(output_dir: str) -> bool:
    """Whether ``--resume`` continues from a checkpoint of ``output_dir`` (else it starts a new run)."""
    return os.path.isfile(os.path.join(output_dir, LAST_CHECKPOINT))


def find_resume_point(output_dir: str, ema_enabled: bool) -> Optional[ResumePoint]:
    """
    The checkpoint that ``<output_dir>/last_checkpoint`` names, which ``--resume`` loads; None if
    the folder has none.

    Raises:
        ResumeError if that file does not exist, holds no training state (weights alone, such as
        a converted or exported file) or holds an EMA of the weights that a run without
        ``ema_enabled`` would drop; ValueError naming it if it cannot be read or holds infinite
        or NaN values (in its weights or their EMA).
    """
    if not has_last_checkpoint(output_dir):
        return None
    tag = os.path.join(output_dir, LAST_CHECKPOINT)
    with open(tag) as f:
        name = f.read().strip()
    path = os.path.join(output_dir, name)
    if not os.path.isfile(path):
        raise ResumeError(f"{tag} names {name}, which does not exist: --resume has nothing to continue from")
    checkpoint = load_weights_file(path)
    trainer = checkpoint.get("trainer")
    if not isinstance(trainer, dict) or "iteration" not in trainer:
        raise ResumeError(
            f"{path} holds no training state (iteration, optimizer), only weights: --resume continues a run from "
            f"the checkpoints it saved. To train from these weights, start a new run with "
            f"train.init_checkpoint={path} and another train.output_dir, without --resume."
        )
    if ema_weights_of(checkpoint) is not None and not ema_enabled:
        raise ResumeError(
            f"{path} holds an EMA of the weights, which this run would drop: resume with train.ema.enabled=True "
            "(and the train.ema settings of the run it continues)."
        )
    check_checkpoint_finite(checkpoint, path)
    return ResumePoint(path, trainer["iteration"], trainer.get("num_threads"))
