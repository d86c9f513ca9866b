from .hooks import SavePredictionImages
from .launch import launch
from .lr_schedule import EpochCosine, epochs_to_iters, iters_per_epoch, scaled_lr, warmup_cosine
from .optimizer import get_param_groups
from .trainer import YOLOSTrainer

__all__ = [
    "EpochCosine",
    "SavePredictionImages",
    "YOLOSTrainer",
    "epochs_to_iters",
    "get_param_groups",
    "iters_per_epoch",
    "launch",
    "scaled_lr",
    "warmup_cosine",
]
