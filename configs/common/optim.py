"""AdamW in the original YOLOS parameter groups, with a per-iteration cosine schedule."""
import torch
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler

from yolos_d2.engine import get_param_groups

# The original's --min-lr: the cosine schedule ends at this learning rate.
MIN_LR = 1e-7

optimizer = L(torch.optim.AdamW)(
    params=L(get_param_groups)(weight_decay=1e-4),
    lr=2.5e-5,
    weight_decay=1e-4,
)

# Multiplies optimizer.lr; end_value is MIN_LR / optimizer.lr (each variant sets it with its lr).
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=MIN_LR / 2.5e-5),
    warmup_length=0.0,
    warmup_factor=0.001,
)
