"""Everything a YOLOS variant on COCO starts from; the variant files state what differs."""
from .coco_data import dataloader
from .optim import lr_multiplier, optimizer
from .train import train
from .yolos_model import model

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
