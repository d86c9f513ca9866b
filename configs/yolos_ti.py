"""
YOLOS-Ti: DeiT-Ti (192-d, 12 layers, 3 heads) pre-trained 300 epochs at 224, fine-tuned 300
epochs on COCO at 8 GPUs x 2 images, evaluated at 512. Paper: 28.7 AP.

Initialise from DeiT-Ti: yolos-convert deit_tiny_patch16_224-a1311bcf.pth \
    deit_tiny_yolos_d2.pth --format deit --config-file configs/yolos_ti.py
"""
from .common.yolos import dataloader, lr_multiplier, model, optimizer, train

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

# The original's init_pe_size 800x1333 floored to whole patches: the same 50x83 grid.
model.detector.backbone.update(
    embed_dim=192, depth=12, num_heads=3, init_pe_size=(800, 1328), mid_pe_size=None
)

dataloader.train.mapper.augmentations.scales = list(range(256, 609, 16))
dataloader.test.mapper.augmentations.eval_size = 512

# 300 epochs at 8 GPUs x 2 images.
dataloader.train.total_batch_size = 16
train.schedule.update(epochs=300, reference_batch_size=16)
optimizer.lr = 5e-5
train.init_checkpoint = "deit_tiny_yolos_d2.pth"
train.output_dir = "./output/yolos_ti"
