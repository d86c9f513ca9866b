"""The original YOLOS learning-rate schedule as a detectron2 ``ParamScheduler``."""
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler, ParamScheduler

__all__ = ["warmup_cosine"]


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
    if not 0 < min_lr <= base_lr:
        raise ValueError(f"the schedule needs 0 < min_lr <= base_lr, got min_lr={min_lr}, base_lr={base_lr}")
    if not 0 <= warmup_iters <= max_iter:
        raise ValueError(f"lr_multiplier.warmup_iters must be in [0, train.max_iter={max_iter}], got {warmup_iters}")
    return WarmupParamScheduler(
        CosineParamScheduler(start_value=1.0, end_value=min_lr / base_lr),
        warmup_factor=warmup_factor,
        warmup_length=warmup_iters / max_iter,
    )
