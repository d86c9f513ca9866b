"""
YOLOS-S fine-tuned from DeiT-S pre-trained for 200 epochs (instead of 300); everything else as
``yolos_s.py``. Paper: 36.1 AP at 800.

Initialise from it: yolos-convert deit-small-200epoch.pth \
    deit_small_200ep_yolos_d2.pth --format deit --config-file configs/yolos_s_200ep.py
"""
from .yolos_s import dataloader, lr_multiplier, model, optimizer, train

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

train.init_checkpoint = "deit_small_200ep_yolos_d2.pth"
train.output_dir = "./output/yolos_s_200ep"
