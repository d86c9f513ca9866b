"""
AdamW in the original YOLOS parameter groups, with a per-iteration warmup-cosine schedule (the
paper configs replace it with the original's per-epoch one, see yolos.py).
"""
import torch
from detectron2.config import LazyCall as L

from yolos_d2.engine import get_param_groups, warmup_cosine

optimizer = L(torch.optim.AdamW)(
    params=L(get_param_groups)(),
    lr=2.5e-5,
    # The decayed group's; the other group has none.
    weight_decay=1e-4,
)

# Multiplies optimizer.lr; follows overrides of optimizer.lr and train.max_iter.
lr_multiplier = L(warmup_cosine)(
    base_lr="${optimizer.lr}",
    # The original's --min-lr.
    min_lr=1e-7,
    max_iter="${train.max_iter}",
    # The original's default: no warmup.
    warmup_iters=0,
)
