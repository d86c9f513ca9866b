"""
Training: the trainer, its hooks, the EMA of the weights, schedules, launch, the run lock, the
checkpoint a run resumes from and CPU threads.
"""
from .ema import EMAHook, WeightEMA, unwrap_model
from .hooks import PeriodicCheckpointer, SavePredictionImages
from .launch import launch
from .lr_schedule import (
    EpochCosine,
    epochs_to_iters,
    iters_per_epoch,
    register_schedule_resolvers,
    scaled_lr,
    warmup_cosine,
)
from .optimizer import get_param_groups
from .trainer import YOLOSTrainer

__all__ = [
    "EMAHook",
    "EpochCosine",
    "PeriodicCheckpointer",
    "SavePredictionImages",
    "YOLOSTrainer",
    "WeightEMA",
    "epochs_to_iters",
    "get_param_groups",
    "iters_per_epoch",
    "launch",
    "register_schedule_resolvers",
    "scaled_lr",
    "unwrap_model",
    "warmup_cosine",
]
