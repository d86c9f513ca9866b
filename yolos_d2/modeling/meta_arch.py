"""The ``YOLOS`` meta-architecture: detectron2's batch format in, ``Instances`` out."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torchvision.ops import box_convert

from .criterion import SetCriterion
from .detector import YOLOSDetector
from .postprocessing import token_detections

__all__ = ["YOLOS"]


@META_ARCH_REGISTRY.register()
class YOLOS(nn.Module):
    """
    Wraps :class:`YOLOSDetector` for detectron2: normalises and pads the images of a batch; in
    training returns the losses of its :class:`SetCriterion`, in inference turns the ``[DET]``
    token predictions into ``Instances``.
    """

    def __init__(
        self,
        *,
        detector: YOLOSDetector,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        input_format: str = "RGB",
        size_divisibility: int = 16,
        clip_boxes: bool = True,
        criterion: Optional[SetCriterion] = None,
    ):
        """
        Args:
            detector: maps (B, 3, H, W) normalised RGB images to token predictions.
            pixel_mean, pixel_std: per-channel mean and std in RGB order, in 0-255 pixel units.
            input_format: channel order of the ``image`` tensors given to :meth:`forward`,
                "RGB" or "BGR"; the detector always sees RGB.
            size_divisibility: images are zero-padded (after normalisation) to a multiple of it.
            clip_boxes: clip the predicted boxes to the image, as detectron2's models do. The
                original YOLOS does not, and its COCO AP is of unclipped boxes.
            criterion: the training loss; may be None for a model that only runs inference.
        """
        super().__init__()
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"model.input_format must be 'RGB' or 'BGR', got {input_format!r}")
        self.detector = detector
        self.input_format = input_format
        self.size_divisibility = size_divisibility
        self.clip_boxes = clip_boxes
        self.criterion = criterion
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) pixels (0-255) in ``input_format`` -> (3, H, W) float RGB ``(pixels - pixel_mean) / pixel_std``."""
        image = image.to(self.device)
        if self.input_format == "BGR":
            image = image.flip(0)
        return (image.float() - self.pixel_mean) / self.pixel_std

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise each (3, H, W) ``image`` and pad the batch to a multiple of ``size_divisibility``."""
        return ImageList.from_tensors([self.normalize(x["image"]) for x in batched_inputs], self.size_divisibility)

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: detectron2's list of dicts, each with "image" (3, H, W) uint8 in
                ``input_format``; in training "instances" (``Instances`` with ``gt_boxes``,
                absolute XYXY in the image, and ``gt_classes``), in inference optionally
                "height", "width" (output size, default H, W).

        Returns:
            In training, the criterion's weighted losses "loss_ce", "loss_bbox" and "loss_giou";
            its "class_error" goes to detectron2's ``EventStorage``.
            In inference, one dict per image with "instances": ``Instances`` holding ``pred_boxes``
            (absolute XYXY in the output size), ``scores`` and ``pred_classes``, one per ``[DET]`` token.
        """
        if not self.training:
            return self.inference(batched_inputs)
        if self.criterion is None:
            raise RuntimeError(
                "YOLOS is in training mode but has no criterion: set model.criterion, e.g. to "
                "L(SetCriterion)(...) as configs/common/yolos_model.py does."
            )
        images = self.preprocess_image(batched_inputs)
        targets = self.prepare_targets([x["instances"] for x in batched_inputs], images.image_sizes)
        losses, stats = self.criterion(self.detector(images.tensor), targets)
        storage = get_event_storage()
        for name, value in stats.items():
            storage.put_scalar(name, value)
        return losses

    def prepare_targets(
        self, instances: List[Instances], image_sizes: List[Tuple[int, int]]
    ) -> List[Dict[str, torch.Tensor]]:
        """
        Args:
            instances: per image, ``gt_boxes`` (M_i boxes, absolute XYXY) and ``gt_classes`` (M_i,).
            image_sizes: per image, its (height, width) before padding.

        Returns:
            The criterion's targets: per image "labels" (M_i,) int64 and "boxes" (M_i, 4)
            cx, cy, w, h normalised by the unpadded image size, as the detector predicts them.
        """
        targets = []
        for gt, (height, width) in zip(instances, image_sizes):
            scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=self.device)
            boxes = box_convert(gt.gt_boxes.tensor.to(self.device) / scale, "xyxy", "cxcywh")
            targets.append({"labels": gt.gt_classes.to(self.device), "boxes": boxes})
        return targets

    @torch.no_grad()
    def inference(self, batched_inputs: List[Dict]) -> List[Dict[str, Instances]]:
        images = self.preprocess_image(batched_inputs)
        outputs = self.detector(images.tensor)
        results = []
        for logits, boxes, image_size, inputs in zip(
            outputs["pred_logits"], outputs["pred_boxes"], images.image_sizes, batched_inputs
        ):
            height = inputs.get("height", image_size[0])
            width = inputs.get("width", image_size[1])
            results.append({"instances": self.postprocess(logits, boxes, (height, width), self.clip_boxes)})
        return results

    @staticmethod
    def postprocess(logits: torch.Tensor, boxes: torch.Tensor, output_size, clip_boxes: bool = True) -> Instances:
        """
        DETR's post-processing (:func:`token_detections`): softmax, drop the no-object class, one
        detection per token.

        Args:
            logits: (K, C + 1) class logits of one image.
            boxes: (K, 4) cx, cy, w, h normalised by the (unpadded) input image size.
            output_size: (height, width) of the image the boxes are returned in, in pixels.
            clip_boxes: clip the boxes to ``output_size``.
        """
        scores, classes, xyxy = token_detections(logits, boxes, output_size, clip_boxes)
        instances = Instances(tuple(output_size))
        instances.pred_boxes = Boxes(xyxy)
        instances.scores = scores
        instances.pred_classes = classes
        return instances
