from .hooks import SavePredictionImages
from .launch import launch
from .lr_schedule import warmup_cosine
from .optimizer import get_param_groups
from .trainer import YOLOSTrainer

__all__ = ["SavePredictionImages", "YOLOSTrainer", "get_param_groups", "launch", "warmup_cosine"]
