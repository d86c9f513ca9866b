"""DETR's set prediction loss (Carion et al. 2020), which YOLOS trains with unchanged."""
from typing import Dict, List, Mapping, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from detectron2.utils import comm
from torchvision.ops import box_convert, generalized_box_iou_loss

from .matcher import HungarianMatcher

__all__ = ["NonFinitePredictionError", "SetCriterion"]

DEFAULT_LOSS_WEIGHTS = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}


class NonFinitePredictionError(FloatingPointError):
    """
    Predictions given to :class:`SetCriterion` hold infinite or NaN values; the message names the
    outputs and the images of the batch. The trainer adds the iteration and the images' ids.
    """


def check_finite_predictions(outputs: Dict[str, torch.Tensor]) -> None:
    """
    Raise :class:`NonFinitePredictionError` naming the outputs ("pred_logits", "pred_boxes") and
    the images of the batch (by position) where they hold infinite or NaN values. One reduction
    per output and a single device synchronisation when all values are finite.
    """
    names = ("pred_logits", "pred_boxes")
    if torch.stack([torch.isfinite(outputs[name]).all() for name in names]).all():
        return
    problems = []
    for name in names:
        values = outputs[name].detach().flatten(1)
        found = [
            f"{what} in batch images {images}"
            for what, test in (("inf", torch.isinf), ("NaN", torch.isnan))
            for images in [test(values).any(1).nonzero().flatten().tolist()]
            if images
        ]
        if found:
            problems.append(f"{name}: {', '.join(found)}")
    raise NonFinitePredictionError("; ".join(problems))


class SetCriterion(nn.Module):
    """
    Matches predictions to targets with a :class:`HungarianMatcher`, then computes DETR's losses:

    - "loss_ce": cross-entropy over all K tokens of every image, the tokens left unmatched having
      the no-object class C as target; the no-object class is weighted ``eos_coef``, the others 1
      (weighted mean over tokens, as ``F.cross_entropy`` does);
    - "loss_bbox": L1 distance between matched predicted and target boxes (normalised cx, cy, w, h);
    - "loss_giou": 1 - GIoU of the same pairs, as x1, y1, x2, y2.

    Both box losses are summed over the matched pairs and divided by the number of target boxes
    per worker (the batch's total, averaged over the distributed workers; at least 1).
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        eos_coef: float = 0.1,
        loss_weights: Mapping[str, float] = DEFAULT_LOSS_WEIGHTS,
    ):
        """
        Args:
            num_classes: number of object classes C, without no-object.
            matcher: assigns targets to tokens.
            eos_coef: weight of the no-object class in the cross-entropy, in (0, 1].
            loss_weights: factor applied to each loss in :meth:`forward`, by name ("loss_ce",
                "loss_bbox", "loss_giou"); losses left out keep DETR's weights (1, 5, 2).
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"SetCriterion: num_classes must be >= 1, got {num_classes}")
        if not 0 < eos_coef <= 1:
            raise ValueError(f"SetCriterion: eos_coef must be in (0, 1], got {eos_coef}")
        unknown = sorted(set(loss_weights) - set(DEFAULT_LOSS_WEIGHTS))
        if unknown:
            raise ValueError(
                f"SetCriterion: unknown loss_weights key(s) {unknown}; allowed: {sorted(DEFAULT_LOSS_WEIGHTS)}"
            )
        self.num_classes = num_classes
        self.matcher = matcher
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **loss_weights}
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        # Not persistent: it follows from the config, and checkpoints stay those of the detector.
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def forward(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """
        Args:
            outputs: "pred_logits" (B, K, C + 1), last = no object; "pred_boxes" (B, K, 4)
                cx, cy, w, h normalised.
            targets: B dicts with "labels" (M_i,) int64 in [0, C) and "boxes" (M_i, 4)
                cx, cy, w, h normalised, on the device of ``outputs``.

        Returns:
            - losses: "loss_ce", "loss_bbox", "loss_giou", scalar tensors already multiplied by
              their ``loss_weights``;
            - stats, not to be optimised: "class_error", 100 - top-1 accuracy (%) of the matched
              tokens over all C + 1 classes. It is left out when the batch has no target box,
              where it is undefined (DETR reports 100 there).

        Raises:
            NonFinitePredictionError: if the predictions hold infinite or NaN values (checked
                before matching, which would fail on them without naming them).
        """
        check_finite_predictions(outputs)
        indices = self.matcher(outputs, targets)
        matched = (
            torch.cat([torch.full_like(tokens, i) for i, (tokens, _) in enumerate(indices)]),
            torch.cat([tokens for tokens, _ in indices]),
        )
        labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
        num_boxes = self.num_boxes(targets)

        logits = outputs["pred_logits"]
        losses = {
            "loss_ce": self.loss_ce(logits, matched, labels),
            **self.loss_boxes(outputs["pred_boxes"][matched], boxes, num_boxes),
        }
        stats = {}
        if len(labels):
            accuracy = (logits[matched].detach().argmax(-1) == labels).float().mean() * 100
            stats["class_error"] = 100 - accuracy
        return {name: loss * self.loss_weights[name] for name, loss in losses.items()}, stats

    def loss_ce(
        self, logits: torch.Tensor, matched: Tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            logits: (B, K, C + 1) class logits.
            matched: (image_index, token_index), each (N,): the matched tokens.
            labels: (N,) int64 class of the target matched to each of those tokens.

        Returns:
            The unweighted cross-entropy, a scalar.
        """
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        target_classes[matched] = labels
        return F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)

    @staticmethod
    def loss_boxes(pred_boxes: torch.Tensor, boxes: torch.Tensor, num_boxes: float) -> Dict[str, torch.Tensor]:
        """
        Args:
            pred_boxes, boxes: (N, 4) cx, cy, w, h normalised, matched pairwise.
            num_boxes: what the sums over the N pairs are divided by.

        Returns:
            The unweighted "loss_bbox" (L1) and "loss_giou" (1 - GIoU), scalars.
        """
        pred_xyxy, xyxy = (box_convert(b, "cxcywh", "xyxy") for b in (pred_boxes, boxes))
        return {
            "loss_bbox": F.l1_loss(pred_boxes, boxes, reduction="sum") / num_boxes,
            "loss_giou": generalized_box_iou_loss(pred_xyxy, xyxy, reduction="sum") / num_boxes,
        }

    @staticmethod
    def num_boxes(targets: List[Dict[str, torch.Tensor]]) -> float:
        """The number of target boxes in ``targets``, averaged over the distributed workers; at least 1."""
        num_boxes = float(sum(len(t["labels"]) for t in targets))
        world_size = comm.get_world_size()
        if world_size > 1:  # summed on the targets' device: NCCL exchanges GPU tensors only
            total = torch.tensor(num_boxes, device=targets[0]["labels"].device)
            dist.all_reduce(total)
            num_boxes = total.item()
        return max(num_boxes / world_size, 1.0)
