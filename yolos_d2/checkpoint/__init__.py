from .checkpointer import YOLOSCheckpointer, check_checkpoint_fits, describe_variant
from .formats import convert_file
from .io import load_weights_file, save_checkpoint_atomic
from .keys import compact_key_names

__all__ = [
    "YOLOSCheckpointer",
    "check_checkpoint_fits",
    "compact_key_names",
    "convert_file",
    "describe_variant",
    "load_weights_file",
    "save_checkpoint_atomic",
]
