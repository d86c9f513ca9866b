"""One-to-one matching of ``[DET]`` token predictions to ground-truth boxes (DETR, Carion et al. 2020)."""
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou

__all__ = ["HungarianMatcher"]


class HungarianMatcher(nn.Module):
    """
    DETR's Hungarian matcher: assigns each ground-truth box of an image to a distinct token so that
    the summed matching cost is minimal; tokens left over are "no object".

    The cost of predicting target j with token i is
    ``cost_class * -p_i(class_j) + cost_bbox * ||b_i - b_j||_1 + cost_giou * -GIoU(b_i, b_j)``,
    with p_i the softmax class probabilities, the L1 distance on normalised cx, cy, w, h and GIoU
    on the same boxes as x1, y1, x2, y2.
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0):
        super().__init__()
        if cost_class == cost_bbox == cost_giou == 0:
            raise ValueError("HungarianMatcher: cost_class, cost_bbox and cost_giou cannot all be 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou

    @torch.no_grad()
    def cost_matrices(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> List[torch.Tensor]:
        """
        Args:
            outputs: "pred_logits" (B, K, C + 1), last = no object; "pred_boxes" (B, K, 4)
                cx, cy, w, h normalised.
            targets: B dicts with "labels" (M_i,) int64 in [0, C) and "boxes" (M_i, 4)
                cx, cy, w, h normalised.

        Returns:
            B float CPU tensors of shape (K, M_i): the matching cost of each token and target.
        """
        batch_size, num_tokens = outputs["pred_logits"].shape[:2]
        probs = outputs["pred_logits"].flatten(0, 1).softmax(-1)
        pred_boxes = outputs["pred_boxes"].flatten(0, 1)
        labels = torch.cat([t["labels"] for t in targets])
        boxes = torch.cat([t["boxes"] for t in targets])

        # Costs of every token of the batch against every target of the batch, in one go; the
        # blocks pairing tokens and targets of different images are dropped below.
        cost = (
            self.cost_class * -probs[:, labels]
            + self.cost_bbox * torch.cdist(pred_boxes, boxes, p=1)
            + self.cost_giou
            * -generalized_box_iou(box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(boxes, "cxcywh", "xyxy"))
        )
        cost = cost.view(batch_size, num_tokens, -1).cpu()
        sizes = [len(t["labels"]) for t in targets]
        return [block[i] for i, block in enumerate(cost.split(sizes, -1))]

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            outputs, targets: as in :meth:`cost_matrices`.

        Returns:
            B pairs (token_index, target_index) of int64 CPU tensors of length min(K, M_i):
            token ``token_index[n]`` predicts target ``target_index[n]``.
        """
        return [
            tuple(torch.as_tensor(index, dtype=torch.int64) for index in linear_sum_assignment(cost))
            for cost in self.cost_matrices(outputs, targets)
        ]
