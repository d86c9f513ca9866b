"""
YOLOS-S (dWr): the depth- and width-rescaled DeiT-S (330-d, 14 layers, 6 heads) pre-trained 300
epochs at 240, fine-tuned as ``yolos_s.py``. Paper: 37.6 AP at 800.

Initialise from it: yolos-convert deit-small-dWr-scale.pth \
    deit_small_dwr_yolos_d2.pth --format deit --config-file configs/yolos_s_dwr.py
"""
from .yolos_s import dataloader, lr_multiplier, model, optimizer, train

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

model.detector.backbone.update(embed_dim=330, depth=14, num_heads=6)

train.init_checkpoint = "deit_small_dwr_yolos_d2.pth"
train.output_dir = "./output/yolos_s_dwr"
