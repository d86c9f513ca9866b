from .checkpointer import YOLOSCheckpointer, check_checkpoint_fits, describe_variant
from .converters import convert_file
from .io import load_weights_file, save_checkpoint_atomic

__all__ = [
    "YOLOSCheckpointer",
    "check_checkpoint_fits",
    "convert_file",
    "describe_variant",
    "load_weights_file",
    "save_checkpoint_atomic",
]
