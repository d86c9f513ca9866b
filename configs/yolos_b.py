"""
YOLOS-B: DeiT-B distilled (768-d, 12 layers, 12 heads) pre-trained 1000 epochs at 384, fine-tuned
as ``yolos_s.py`` with position embeddings defined at 800x1344. Paper: 42.0 AP at 800.

The distillation token is not used; its position embedding becomes the [CLS] one, as in the
original. Initialise from it: yolos-convert deit_base_distilled_patch16_384-d0272ac0.pth \
    deit_base_distilled_yolos_d2.pth --format deit --config-file configs/yolos_b.py
"""
from .yolos_s import dataloader, lr_multiplier, model, optimizer, train

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]

model.detector.backbone.update(
    embed_dim=768, depth=12, num_heads=12, init_pe_size=(800, 1344), mid_pe_size=(800, 1344)
)

train.init_checkpoint = "deit_base_distilled_yolos_d2.pth"
train.output_dir = "./output/yolos_b"
