"""
From the ``[DET]`` tokens' predictions of one image to detections, in tensor operations that
``torch.export`` records: the exported whole pipeline runs this code, as ``YOLOS`` and
``YOLOSPredictor`` do.
"""
import numbers
from typing import Optional, Tuple

import torch
from torchvision.ops import batched_nms, box_convert

__all__ = ["check_selection", "select_detections", "token_detections"]


def token_detections(
    logits: torch.Tensor, boxes: torch.Tensor, image_size: Tuple[int, int], clip: bool
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    DETR's post-processing: softmax, drop the no-object class, one detection per token.

    Args:
        logits: (K, C + 1) class logits; the last class is "no object".
        boxes: (K, 4) cx, cy, w, h normalised by the (unpadded) input image size.
        (both of any floating dtype: the outputs are computed in float32)
        image_size: (height, width) in pixels of the image the boxes are returned in (symbolic
            while exporting).
        clip: clamp the boxes to the image, as detectron2's ``Boxes.clip``.

    Returns:
        scores: (K,) float32, the probability of each token's best class;
        classes: (K,) int64, that class, in 0..C-1;
        boxes: (K, 4) float32, absolute XYXY in ``image_size``.
    """
    # In float32 whatever the forward's precision: bfloat16 spaces its numbers above 1024 by 8 (pixels).
    logits, boxes = logits.float(), boxes.float()
    scores, classes = logits.softmax(-1)[:, :-1].max(-1)
    height, width = image_size
    # torch.tensor, not new_tensor, which torch.export specialises to the example's size.
    size = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    xyxy = box_convert(boxes, "cxcywh", "xyxy") * size
    if clip:
        xyxy = torch.minimum(xyxy.clamp(min=0), size)
    return scores, classes, xyxy


def check_selection(score_threshold: float = 0.0, top_k: Optional[int] = None, nms_iou: Optional[float] = None) -> None:
    """
    Raise ValueError naming a setting of :func:`select_detections` of another type (a bool, a
    string, a fractional ``top_k``) or outside its range (NaN included).
    """
    if not _is_number(score_threshold) or not 0 <= score_threshold <= 1:
        raise ValueError(f"score_threshold must be a number in [0, 1], got {score_threshold!r}")
    if top_k is not None and (not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be None or a whole number of at least 1, got {top_k!r}")
    if nms_iou is not None and (not _is_number(nms_iou) or not 0 < nms_iou <= 1):
        raise ValueError(f"nms_iou must be None or a number in (0, 1], got {nms_iou!r}")


def _is_number(value) -> bool:
    """Whether ``value`` is a real number (Python's or numpy's), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def select_detections(
    scores: torch.Tensor,
    classes: torch.Tensor,
    boxes: torch.Tensor,
    score_threshold: float = 0.0,
    top_k: Optional[int] = None,
    nms_iou: Optional[float] = None,
) -> torch.Tensor:
    """
    The detections kept of one image: those scoring at least ``score_threshold``, then, if
    ``nms_iou`` is set, those class-wise non-maximum suppression keeps (torchvision's
    ``batched_nms``: a box is dropped if it overlaps one of the same class that scores higher by
    IoU > ``nms_iou``), then the ``top_k`` highest scoring.

    Args:
        scores, classes: (K,) each token's score and class.
        boxes: (K, 4) absolute XYXY; used only by the suppression.

    Returns:
        (N,) int64 token indices: in decreasing score order (equal scores in token order) when a
        threshold above 0, ``top_k`` or ``nms_iou`` applies; else all K tokens in token order.
    """
    if score_threshold <= 0 and top_k is None and nms_iou is None:
        return torch.arange(len(scores), device=scores.device)
    keep = scores.argsort(descending=True, stable=True)
    if score_threshold > 0:
        keep = keep[scores[keep] >= score_threshold]
    if nms_iou is not None:
        keep = keep[batched_nms(boxes[keep], scores[keep], classes[keep], nms_iou)]
    return keep[:top_k]
