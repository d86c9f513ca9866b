"""The YOLOS detector: a ViT with ``[DET]`` tokens and one class and one box prediction per token."""
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import ViTWithDetTokens

__all__ = ["MLP", "YOLOSDetector"]


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's prediction head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class YOLOSDetector(nn.Module):
    """
    Backbone plus the two 3-layer MLP heads of YOLOS, on normalised image tensors.

    Kept free of detectron2 types so its raw outputs can be compared with other implementations.
    """

    def __init__(self, backbone: ViTWithDetTokens, num_classes: int):
        """
        Args:
            backbone: the ViT producing (B, K, D) ``[DET]`` token features.
            num_classes: number of object classes K_cls; the class head predicts K_cls + 1 logits,
                the last one being "no object".
        """
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        dim = backbone.embed_dim
        self.class_embed = MLP(dim, dim, num_classes + 1, 3)
        self.bbox_embed = MLP(dim, dim, 4, 3)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            images: (B, 3, H, W) float images, normalised with the ImageNet mean and std.

        Returns:
            dict with
            - "pred_logits": (B, K, num_classes + 1) class logits, last = no object;
            - "pred_boxes": (B, K, 4) boxes as cx, cy, w, h normalised to [0, 1] by the image size.
        """
        tokens = self.backbone(images)
        # The heads run in float32 under autocast too, so that the matching, the losses and the
        # post-processing read float32 predictions: a bfloat16 box coordinate is only about
        # 2^-9 of the image precise (docs/training.md, "Training in bfloat16").
        with torch.autocast(tokens.device.type, enabled=False):
            tokens = tokens.float()
            return {
                "pred_logits": self.class_embed(tokens),
                "pred_boxes": self.bbox_embed(tokens).sigmoid(),
            }
