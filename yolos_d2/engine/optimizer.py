"""Parameter groups of the original YOLOS optimizer."""
from typing import Dict, List

import torch

# Backbone parameters trained without weight decay, besides biases and 1-D parameters.
# `det_pos_embed` is the [DET] part of the original's single `pos_embed`.
NO_DECAY_NAMES = {"pos_embed", "det_pos_embed", "cls_token", "det_token"}


def get_param_groups(model: torch.nn.Module) -> List[Dict]:
    """
    Groups as the original YOLOS: everything outside the backbone (the heads) and the rest of the
    backbone with the optimizer's weight decay; no weight decay for the backbone's biases, 1-D
    parameters and ``NO_DECAY_NAMES``. The first group carries no ``weight_decay`` of its own, so
    the optimizer's (``optimizer.weight_decay`` in the configs) applies to it.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        in_backbone = ".backbone." in f".{name}"
        if in_backbone and (param.ndim <= 1 or name.endswith(".bias") or name.split(".")[-1] in NO_DECAY_NAMES):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
