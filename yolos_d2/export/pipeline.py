"""
The whole of a prediction as one module that ``torch.export`` records: an image of any size in,
its detections out. What :mod:`yolos_d2.tools.export` writes as the whole-pipeline ONNX file.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.data import transforms as T

from ..data import DEFAULT_MAX_SIZE, EvalResize
from ..modeling import YOLOS, check_selection, select_detections

__all__ = ["OUTPUT_NAMES", "YOLOSPipeline", "resize_like_pil"]

OUTPUT_NAMES = ["boxes", "scores", "classes", "det_tokens"]


def resize_like_pil(pixels: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """
    PIL's 8-bit bilinear resize, which the predictor runs, in float tensor operations: antialiased
    bilinear interpolation (PIL's triangle filter, widened by the scale when shrinking; PyTorch's
    ``antialias=True``, ONNX's ``Resize`` with ``antialias=1``) along the width, then along the
    height, each pass rounded half up to whole levels as PIL's 8-bit passes are.

    Equal to PIL's on all but a few pixels, which are one level apart: PIL's fixed-point weights
    make exact ties of two pixels that float weights miss by a rounding (measured in
    docs/deployment.md).

    Args:
        pixels: (C, H, W) float, whole levels in 0..255.
        size: (height, width) in pixels of the result.

    Returns:
        (C, height, width) float, whole levels in 0..255.
    """
    height, width = size
    resized = pixels[None]
    for pass_size in ((resized.shape[2], width), (height, width)):
        resized = F.interpolate(resized, size=pass_size, mode="bilinear", align_corners=False, antialias=True)
        resized = (resized + 0.5).floor()
    return resized[0]


class YOLOSPipeline(nn.Module):
    """
    :class:`YOLOSPredictor`'s work on one image, in tensor operations:

    1. the predictor's size for the image (:meth:`yolos_d2.data.EvalResize.output_shape`: the
       config's test-time resize, the longer side capped at ``max_size``), computed from the
       image's size inside the graph; the resize itself by :func:`resize_like_pil`, as the
       predictor's PIL resize;
    2. ``model``'s normalisation, padding to ``model.size_divisibility``, detector and
       post-processing (boxes in the input image's pixels, clipped if ``model.clip_boxes``);
    3. :func:`select_detections` with ``score_threshold`` and ``top_k``, fixed in the module.
    """

    def __init__(
        self,
        model: YOLOS,
        augmentations: Sequence[T.Augmentation],
        score_threshold: float = 0.0,
        top_k: Optional[int] = None,
        max_size: Optional[int] = DEFAULT_MAX_SIZE,
    ):
        """
        Args:
            model: in eval mode.
            augmentations: the config's test-time augmentations, built, as :class:`EvalResize` takes them.
            score_threshold, top_k, max_size: see :class:`YOLOSPredictor`.

        Raises:
            ValueError for other augmentations or a setting out of range.
        """
        super().__init__()
        check_selection(score_threshold, top_k)
        self.model = model
        self.resize = EvalResize(augmentations, max_size)
        self.score_threshold = score_threshold
        self.top_k = top_k

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            image: (H, W, 3) uint8 in ``model.input_format``.

        Returns:
            the detections kept, in decreasing score order when a threshold or ``top_k`` applies,
            else one per ``[DET]`` token in token order:
            "boxes" (N, 4) float32 absolute XYXY in the image's pixels, "scores" (N,) float32,
            "classes" (N,) int64 and "det_tokens" (N,) int64, the index of each one's token.
        """
        height, width = image.shape[0], image.shape[1]
        pixels = image.permute(2, 0, 1).float()
        if not self.resize.keeps_every_size:
            sides = self.resize.output_shape(torch.scalar_tensor(height), torch.scalar_tensor(width))
            new_height, new_width = (side.item() for side in sides)
            # What torch.export cannot infer of sizes computed from values: each is at least a pixel.
            torch._check(new_height >= 1)
            torch._check(new_width >= 1)
            pixels = resize_like_pil(pixels, (new_height, new_width))
        model = self.model
        normalized = model.normalize(pixels)
        if model.size_divisibility > 1:  # zero padding at the bottom and right, as ImageList's
            divisor = model.size_divisibility
            normalized = F.pad(normalized, (0, -normalized.shape[2] % divisor, 0, -normalized.shape[1] % divisor))
        outputs = model.detector(normalized[None])
        instances = model.postprocess(
            outputs["pred_logits"][0], outputs["pred_boxes"][0], (height, width), model.clip_boxes
        )
        boxes = instances.pred_boxes.tensor
        keep = select_detections(instances.scores, instances.pred_classes, boxes, self.score_threshold, self.top_k)
        return {
            "boxes": boxes[keep],
            "scores": instances.scores[keep],
            "classes": instances.pred_classes[keep],
            "det_tokens": keep,
        }
