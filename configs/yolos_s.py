"""
YOLOS-S: DeiT-S (384-d, 12 layers, 6 heads) pre-trained 300 epochs at 224, fine-tuned 150 epochs
on COCO at 8 GPUs x 1 image with mid-layer position embeddings, evaluated at 800.

Initialise from DeiT-S: yolos-convert deit_small_patch16_224-cd65a155.pth \
    deit_small_yolos_d2.pth --format deit --config-file configs/yolos_s.py
"""
from .common.yolos import dataloader, lr_multiplier, model, optimizer, train

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

model.detector.backbone.update(
    embed_dim=384, depth=12, num_heads=6, init_pe_size=(512, 864), mid_pe_size=(512, 864)
)

train.init_checkpoint = "deit_small_yolos_d2.pth"
train.output_dir = "./output/yolos_s"
