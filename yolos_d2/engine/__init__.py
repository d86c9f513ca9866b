from .ema import EMAHook, WeightEMA, unwrap_model
from .hooks import SavePredictionImages
from .launch import launch
from .lr_schedule import EpochCosine, epochs_to_iters, iters_per_epoch, scaled_lr, warmup_cosine
from .optimizer import get_param_groups
from .pipeline import YOLOSPipeline
from .predictor import DEFAULT_MAX_SIZE, YOLOSPredictor, build_inference_model, metadata_of_test_dataset
from .trainer import YOLOSTrainer

__all__ = [
    "DEFAULT_MAX_SIZE",
    "EMAHook",
    "EpochCosine",
    "SavePredictionImages",
    "YOLOSPipeline",
    "YOLOSPredictor",
    "YOLOSTrainer",
    "WeightEMA",
    "build_inference_model",
    "epochs_to_iters",
    "get_param_groups",
    "iters_per_epoch",
    "launch",
    "metadata_of_test_dataset",
    "scaled_lr",
    "unwrap_model",
    "warmup_cosine",
]
