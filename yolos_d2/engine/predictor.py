"""
A trained YOLOS described by a LazyConfig, and running it on single images the way detectron2's
``DefaultPredictor`` does for yacs configs.
"""
import logging
import os
from typing import Optional, Tuple

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, Metadata, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import Instances
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import log_first_n

from ..checkpoint import YOLOSCheckpointer
from ..data import check_num_classes
from ..modeling import YOLOS

__all__ = ["DEFAULT_MAX_SIZE", "YOLOSPredictor", "build_inference_model", "metadata_of_test_dataset"]

logger = logging.getLogger(__name__)

# Longest image side, in pixels, the predictor gives the model by default: DETR's test-time
# maximum. The attention's memory grows with the square of the pixel count.
DEFAULT_MAX_SIZE = 1333


def build_inference_model(cfg, require_weights: bool = True) -> YOLOS:
    """
    ``cfg.model`` on ``cfg.train.device``, in eval mode, with the weights of
    ``cfg.train.init_checkpoint`` loaded by :class:`YOLOSCheckpointer` (every tensor of the model
    must be in the file unless ``cfg.train.init_checkpoint_strict`` is False).

    Args:
        cfg: a config checked by :func:`yolos_d2.config.check_config`.
        require_weights: whether an empty ``train.init_checkpoint`` is an error; if not, the
            model keeps its random initialisation and a warning says so.

    Raises:
        ValueError if weights are required and ``train.init_checkpoint`` is empty, or if the
        checkpoint does not fit the model; FileNotFoundError if it names no file.
    """
    checkpoint = cfg.train.init_checkpoint
    if not checkpoint and require_weights:
        raise ValueError(
            "train.init_checkpoint is empty: give the weights to run, e.g. "
            "--weights output/quickstart/model_final.pth"
        )
    if checkpoint and not os.path.isfile(PathManager.get_local_path(checkpoint)):
        raise FileNotFoundError(f"train.init_checkpoint={checkpoint!r}: file not found")
    model = instantiate(cfg.model).to(cfg.train.device).eval()
    if checkpoint:
        YOLOSCheckpointer(model, strict=cfg.train.init_checkpoint_strict).load(checkpoint)
    else:
        logger.warning("train.init_checkpoint is empty: the model has random weights")
    return model


def metadata_of_test_dataset(cfg) -> Metadata:
    """
    The metadata of the config's (first) test dataset, whose ``thing_classes`` name the model's
    classes; raises ``ValueError`` if their count is not ``cfg.model.detector.num_classes``.
    """
    names = cfg.dataloader.test.dataset.names
    name = names if isinstance(names, str) else names[0]
    if MetadataCatalog.get(name).get("thing_classes") is None:
        # A COCO-json dataset names its classes once its json has been read.
        DatasetCatalog.get(name)
    check_num_classes(name, cfg.model.detector.num_classes)
    return MetadataCatalog.get(name)


class YOLOSPredictor:
    """
    Runs a trained YOLOS on one image at a time: the weights of ``cfg.train.init_checkpoint``,
    the test-time resize of ``cfg.dataloader.test.mapper.augmentations``, on ``cfg.train.device``.
    An image whose longer side exceeds ``max_size`` after that resize (a config without one, such
    as the quick start's, keeps the image's size) is scaled down to it, and this is logged.

    Attributes:
        model: the :class:`YOLOS` in eval mode.
        metadata: of the config's test dataset; its ``thing_classes`` name the predicted classes.
        max_size: longest side, in pixels, of the images given to the model; None or 0: no limit.
    """

    def __init__(self, cfg, max_size: Optional[int] = DEFAULT_MAX_SIZE):
        self.model = build_inference_model(cfg)
        self.metadata = metadata_of_test_dataset(cfg)
        self.augmentations = T.AugmentationList(list(instantiate(cfg.dataloader.test.mapper.augmentations)))
        self.max_size = max_size

    def resize(self, image: np.ndarray) -> np.ndarray:
        """
        (H, W, 3) uint8 RGB -> (H', W', 3), resized as the config's test mapper resizes images,
        then scaled (bilinear, sides rounded, aspect ratio kept) so that max(H', W') <= ``max_size``.
        """
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        resized = aug_input.image
        height, width = resized.shape[:2]
        longer = max(height, width)
        if not self.max_size or longer <= self.max_size:
            return resized
        new_height, new_width = (max(1, (side * self.max_size + longer // 2) // longer) for side in (height, width))
        log_first_n(
            logging.INFO,
            f"Scaled a {width}x{height} image down to {new_width}x{new_height} for prediction: its longer side "
            f"exceeds max_size={self.max_size}",
            key="message",
            name=__name__,
        )
        return T.ResizeTransform(height, width, new_height, new_width).apply_image(resized)

    def predict(self, resized: np.ndarray, output_size: Optional[Tuple[int, int]] = None) -> Instances:
        """
        Args:
            resized: (H', W', 3) uint8 RGB, already resized (see :meth:`resize`).
            output_size: (height, width) in pixels the boxes are returned in; default (H', W').

        Returns:
            ``Instances`` on the CPU, one per ``[DET]`` token in token order: ``pred_boxes``
            (absolute XYXY in ``output_size``), ``scores`` and ``pred_classes``.
        """
        pixels = resized if self.model.input_format == "RGB" else resized[:, :, ::-1]
        tensor = torch.as_tensor(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        height, width = output_size or resized.shape[:2]
        outputs = self.model([{"image": tensor, "height": height, "width": width}])
        return outputs[0]["instances"].to("cpu")

    def __call__(self, image: np.ndarray) -> Instances:
        """(H, W, 3) uint8 RGB -> the predictions of :meth:`predict`, boxes in the image's pixels."""
        return self.predict(self.resize(image), image.shape[:2])
