"""
The original YOLOS learning-rate schedules as detectron2 ``ParamScheduler``s, and the epoch
arithmetic that turns a recipe stated in epochs into iterations, also as OmegaConf resolvers for
configs (:func:`register_schedule_resolvers`).
"""
import math

from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler, ParamScheduler
from omegaconf import OmegaConf

__all__ = [
    "EpochCosine",
    "epochs_to_iters",
    "iters_per_epoch",
    "register_schedule_resolvers",
    "scaled_lr",
    "warmup_cosine",
]


def iters_per_epoch(epoch_size: int, total_batch_size: int) -> int:
    """
    Iterations of one pass over ``epoch_size`` images at ``total_batch_size`` per iteration,
    counting the last partial batch: the original's count, whose ``DistributedSampler`` pads each
    epoch to whole batches (118,287 COCO images at 8 x 2: 7,393 iterations). It is exact when
    every process takes one image per iteration, and at YOLOS-Ti's 8 x 2.
    """
    _check_positive_ints(epoch_size=epoch_size, total_batch_size=total_batch_size)
    return math.ceil(epoch_size / total_batch_size)


def epochs_to_iters(epochs: int, epoch_size: int, total_batch_size: int) -> int:
    """Iterations of ``epochs`` passes, each of :func:`iters_per_epoch` iterations."""
    _check_positive_ints(epochs=epochs)
    return epochs * iters_per_epoch(epoch_size, total_batch_size)


def _check_positive_ints(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be an integer > 0, got {value!r}")


def scaled_lr(lr: float, total_batch_size: int, reference_batch_size: int) -> float:
    """The linear scaling rule: ``lr`` at ``reference_batch_size`` images per iteration, at ``total_batch_size``."""
    return lr * total_batch_size / reference_batch_size


def register_schedule_resolvers() -> None:
    """
    Make :func:`iters_per_epoch` and :func:`epochs_to_iters` available to config interpolations
    as ``${yolos_d2.iters_per_epoch:EPOCH_SIZE,TOTAL_BATCH_SIZE}`` and
    ``${yolos_d2.epochs_to_iters:EPOCHS,EPOCH_SIZE,TOTAL_BATCH_SIZE}``. Resolved when read, they
    follow overrides of their arguments, e.g. of ``dataloader.train.total_batch_size``. Calling it
    again changes nothing.
    """
    OmegaConf.register_new_resolver("yolos_d2.iters_per_epoch", iters_per_epoch, replace=True)
    OmegaConf.register_new_resolver("yolos_d2.epochs_to_iters", epochs_to_iters, replace=True)


def warmup_cosine(
    *, base_lr: float, min_lr: float, max_iter: int, warmup_iters: int = 0, warmup_factor: float = 0.001
) -> ParamScheduler:
    """
    The original's ``warmupcos`` schedule, stepped per iteration: a linear warmup over
    ``warmup_iters`` from ``warmup_factor`` times the learning rate, then a cosine decay from
    ``base_lr`` to ``min_lr`` at ``max_iter``.

    Returns:
        multipliers of ``base_lr`` over the training progress in [0, 1], for detectron2's
        ``LRScheduler`` hook. Configs pass ``base_lr="${optimizer.lr}"`` and
        ``max_iter="${train.max_iter}"`` so that overriding either keeps the schedule consistent.
    """
    _check_lr_range(base_lr, min_lr)
    if not 0 <= warmup_iters <= max_iter:
        raise ValueError(f"lr_multiplier.warmup_iters must be in [0, train.max_iter={max_iter}], got {warmup_iters}")
    return WarmupParamScheduler(
        CosineParamScheduler(start_value=1.0, end_value=min_lr / base_lr),
        warmup_factor=warmup_factor,
        warmup_length=warmup_iters / max_iter,
    )


def _check_lr_range(base_lr: float, min_lr: float) -> None:
    if not 0 < min_lr <= base_lr:
        raise ValueError(f"the schedule needs 0 < min_lr <= base_lr, got min_lr={min_lr}, base_lr={base_lr}")


class EpochCosine(ParamScheduler):
    """
    The original's ``warmupcos`` schedule exactly as its training loop steps it: once per epoch,
    after the epoch (``lr_scheduler.step(epoch)``), so that epoch k trains at the value of epoch
    k - 1 (epochs 0 and 1 both at the first value). Values of epoch t < ``warmup_epochs`` rise
    linearly from ``warmup_lr``; from there on they follow a cosine from ``base_lr`` at epoch 0 to
    ``min_lr`` at ``epochs``, and stay at ``min_lr`` past it.

    Called with the training progress ``where`` = iteration / ``max_iter`` (detectron2's
    ``LRMultiplier``), it returns the multiplier of ``base_lr`` for that iteration.
    """

    def __init__(
        self,
        *,
        base_lr: float,
        min_lr: float,
        epochs: int,
        iters_per_epoch: int,
        max_iter: int,
        warmup_epochs: int = 0,
        warmup_lr: float = 1e-6,
    ):
        """
        Args:
            base_lr: the optimizer's learning rate (the original's ``--lr``).
            min_lr: the value at the end of the cosine (``--min-lr``).
            epochs: length of the cosine in epochs (``--epochs``).
            iters_per_epoch: iterations of one epoch (see :func:`iters_per_epoch`).
            max_iter: the run's iterations, which ``where`` is a fraction of.
            warmup_epochs, warmup_lr: the original's ``--warmup-epochs`` and ``--warmup-lr``.
        """
        _check_lr_range(base_lr, min_lr)
        if epochs <= 0 or iters_per_epoch <= 0 or max_iter <= 0:
            raise ValueError(
                f"EpochCosine needs positive epochs, iters_per_epoch and max_iter, got {epochs}, "
                f"{iters_per_epoch} and {max_iter}"
            )
        if not 0 <= warmup_epochs <= epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}], got {warmup_epochs}")
        self.base_lr = base_lr
        self.min_lr = min_lr
        self.epochs = epochs
        self.iters_per_epoch = iters_per_epoch
        self.max_iter = max_iter
        self.warmup_epochs = warmup_epochs
        self.warmup_lr = warmup_lr

    def epoch_value(self, t: int) -> float:
        """The original's ``CosineLRScheduler._get_lr(t)`` with one cycle, in lr units."""
        if t < self.warmup_epochs:
            return self.warmup_lr + t * (self.base_lr - self.warmup_lr) / self.warmup_epochs
        if t >= self.epochs:
            return self.min_lr
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t / self.epochs))

    def __call__(self, where: float) -> float:
        epoch = round(where * self.max_iter) // self.iters_per_epoch
        return self.epoch_value(max(epoch - 1, 0)) / self.base_lr
