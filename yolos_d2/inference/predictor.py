"""
A trained YOLOS described by a LazyConfig, and running it on images (one, or a list at a time)
the way detectron2's ``DefaultPredictor`` does for yacs configs.
"""
import logging
import numbers
import os
from collections import defaultdict
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, Metadata, MetadataCatalog
from detectron2.structures import Instances
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import log_first_n
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from ..checkpoint import YOLOSCheckpointer
from ..checkpoint.checkpointer import ema_weights_of
from ..config import prepare_config
from ..data import DEFAULT_MAX_SIZE, EvalResize, check_num_classes, image_to_array, read_image
from ..modeling import YOLOS, check_selection, select_detections
from .precision import apply_precision, check_precision

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ImageInput",
    "YOLOSPredictor",
    "build_inference_model",
    "check_max_size",
    "metadata_of_test_dataset",
]

logger = logging.getLogger(__name__)

# An image the predictor reads: a file path, an (H, W, 3) uint8 array in the model's input format
# (``model.input_format``), or a PIL image.
ImageInput = Union[str, os.PathLike, np.ndarray, Image.Image]


def build_inference_model(cfg, require_weights: bool = True) -> YOLOS:
    """
    ``cfg.model`` on ``cfg.train.device``, in eval mode, with the weights of
    ``cfg.train.init_checkpoint`` loaded by :class:`YOLOSCheckpointer` (every tensor of the model
    must be in the file unless ``cfg.train.init_checkpoint_strict`` is False): the file's EMA
    of the weights where it has one (logged), unless ``cfg.train.eval_with_ema`` is False.

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
        use_ema = bool(OmegaConf.select(cfg, "train.eval_with_ema", default=True))
        loaded = YOLOSCheckpointer(model, strict=cfg.train.init_checkpoint_strict, use_ema=use_ema).load(checkpoint)
        weights = "EMA of the weights" if use_ema and ema_weights_of(loaded) is not None else "trained weights"
        logger.info(f"Loaded the {weights} of {checkpoint}")
    else:
        logger.warning("train.init_checkpoint is empty: the model has random weights")
    return model


def check_max_size(max_size: Optional[int], patch_size: int) -> None:
    """
    Raise ValueError unless ``max_size`` (the predictor's cap on an image's longer side) is None
    or 0 (no cap), or a whole number of pixels of at least ``patch_size``: one patch of the model.
    """
    if max_size is None:
        return
    whole_number = isinstance(max_size, numbers.Integral) and not isinstance(max_size, bool)
    if not whole_number or not (max_size == 0 or max_size >= patch_size):
        raise ValueError(
            f"max_size must be None, 0 (no limit) or a whole number of pixels of at least the model's patch size, "
            f"{patch_size}; got {max_size!r}"
        )


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
    Runs a trained YOLOS on images: the weights of ``cfg.train.init_checkpoint``, the test-time
    resize of ``cfg.dataloader.test.mapper.augmentations``, on ``cfg.train.device``. An image
    whose longer side would exceed ``max_size`` after that resize (a config without one, such as
    the quick start's, keeps the image's size) is resized to a longer side of ``max_size``
    instead, and this is logged: :class:`yolos_d2.data.EvalResize`, one PIL bilinear resize.

    Called on one image it returns its ``Instances``; on a list, one ``Instances`` per image.
    The images of a list that have the same size after the resize run in one forward, those of
    other sizes in forwards of their own: no image is padded to another's size, so an image's
    detections do not depend on the others in the list (they equal those of the image alone
    to float rounding). Memory grows with the number of images of one size: give lists of a
    length the device affords.

    Attributes:
        model: the :class:`YOLOS` in eval mode.
        metadata: of the config's test dataset; its ``thing_classes`` name the predicted classes.
        input_format: channel order of the arrays given, ``model.input_format`` ("RGB" or "BGR").
        max_size: longest side, in pixels, of the images given to the model; None or 0: no limit.
        eval_resize: the :class:`~yolos_d2.data.EvalResize` of the config and ``max_size``.
        score_threshold, top_k, nms_iou: which detections are returned, see :meth:`__init__`.
        precision: the :class:`~yolos_d2.inference.precision.InferencePrecision` in effect.
    """

    def __init__(
        self,
        cfg: Union[DictConfig, str, os.PathLike],
        max_size: Optional[int] = DEFAULT_MAX_SIZE,
        *,
        overrides: Sequence[str] = (),
        weights: Optional[str] = None,
        device: Optional[str] = None,
        score_threshold: float = 0.0,
        top_k: Optional[int] = None,
        nms_iou: Optional[float] = None,
        precision: str = "fp32",
    ):
        """
        Args:
            cfg: a LazyConfig object (not changed) or file, prepared by
                :func:`yolos_d2.config.prepare_config` with ``overrides`` (``key=value``),
                ``weights`` (sets ``train.init_checkpoint``) and ``device`` (sets ``train.device``).
            max_size: see the class description; 0 or at least the model's patch size.
            score_threshold: return the detections scoring at least this, in [0, 1]; 0 keeps
                every ``[DET]`` token's.
            top_k: return at most this many detections, the highest scoring; None: no limit.
            nms_iou: if set, in (0, 1], drop a detection that overlaps one of the same class
                scoring higher by more than this IoU (YOLOS is trained not to need it).
            precision: "fp32"; "int8" (CPU) or "bf16" (where the device computes it natively,
                else fp32 with a warning) to run faster with slightly different outputs, see
                :func:`yolos_d2.inference.precision.apply_precision` and docs/deployment.md.

        Raises:
            ValueError (:class:`yolos_d2.config.ConfigError` for the config) for a setting that
            cannot work; FileNotFoundError for weights that do not exist.
        """
        check_selection(score_threshold, top_k, nms_iou)
        cfg = prepare_config(cfg, overrides, weights, device)
        check_precision(precision, cfg.train.device)
        self.model = build_inference_model(cfg)
        check_max_size(max_size, self.model.detector.backbone.patch_size)
        self.precision = apply_precision(self.model, precision, cfg.train.device)
        self.metadata = metadata_of_test_dataset(cfg)
        self.eval_resize = EvalResize.from_config(cfg, max_size)
        self.input_format = self.model.input_format
        self.max_size = max_size
        self.score_threshold = score_threshold
        self.top_k = top_k
        self.nms_iou = nms_iou

    def image_array(self, image: ImageInput) -> np.ndarray:
        """
        The (H, W, 3) uint8 pixels, in ``input_format``, of a file (read by
        :func:`yolos_d2.data.read_image`), a PIL image (converted as that reads files) or an
        array (checked). Raises OSError for a file that cannot be read, ValueError for an array
        of another shape or type, or an image without pixels (a side of 0).
        """
        if isinstance(image, (str, os.PathLike)):
            array = read_image(os.fspath(image), format=self.input_format)
        elif isinstance(image, Image.Image):
            array = image_to_array(image, format=self.input_format)
        elif isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
            array = image
        elif isinstance(image, np.ndarray):
            raise ValueError(
                f"Expected an (H, W, 3) uint8 {self.input_format} array, got shape {image.shape} and type {image.dtype}"
            )
        else:
            raise ValueError(f"Expected an image file, a PIL image or an array, got {type(image).__name__}")
        if 0 in array.shape[:2]:
            raise ValueError(f"Expected an image of at least 1x1 pixels, got one of {array.shape[1]}x{array.shape[0]}")
        return array

    def resize(self, image: np.ndarray) -> np.ndarray:
        """
        (H, W, 3) uint8 -> (H', W', 3): the config's test-time resize, the longer side capped at
        ``max_size`` (:meth:`yolos_d2.data.EvalResize.apply_image`).
        """
        resized = self.eval_resize.apply_image(image)
        height, width = image.shape[:2]
        if self.eval_resize.is_capped(height, width):
            new_height, new_width = resized.shape[:2]
            log_first_n(
                logging.INFO,
                f"Scaled a {width}x{height} image down to {new_width}x{new_height} for prediction: its longer side "
                f"exceeds max_size={self.max_size}",
                key="message",
                name=__name__,
            )
        return resized

    def predict(self, resized: np.ndarray, output_size: Optional[Tuple[int, int]] = None) -> Instances:
        """
        Args:
            resized: (H', W', 3) uint8 in ``input_format``, already resized (see :meth:`resize`).
            output_size: (height, width) in pixels the boxes are returned in; default (H', W').

        Returns:
            ``Instances`` on the CPU, see :meth:`__call__`.
        """
        return self._forward([resized], [output_size or resized.shape[:2]])[0]

    def __call__(self, images: Union[ImageInput, Sequence[ImageInput]]) -> Union[Instances, List[Instances]]:
        """
        Args:
            images: an image or a list of images, each a file path, an (H, W, 3) uint8 array in
                ``input_format`` or a PIL image.

        Returns:
            For an image its ``Instances``, for a list a list of them, on the CPU, in the image's
            pixels: ``pred_boxes`` (absolute XYXY, clipped to the image if ``model.clip_boxes``),
            ``scores``, ``pred_classes`` and ``det_tokens`` (the index of the ``[DET]`` token that
            made each detection). With the default settings, one detection per token in token
            order; with a ``score_threshold`` above 0, a ``top_k`` or an ``nms_iou``, those kept
            (:func:`yolos_d2.modeling.select_detections`) in decreasing score order.
        """
        if not isinstance(images, (list, tuple)):
            return self([images])[0]
        arrays = [self.image_array(image) for image in images]
        resized = [self.resize(array) for array in arrays]
        same_size = defaultdict(list)  # resized (H', W') -> indices of its images
        for i, image in enumerate(resized):
            same_size[image.shape[:2]].append(i)
        results: List[Optional[Instances]] = [None] * len(images)
        for indices in same_size.values():
            outputs = self._forward([resized[i] for i in indices], [arrays[i].shape[:2] for i in indices])
            for i, instances in zip(indices, outputs):
                results[i] = instances
        return results

    def _forward(self, resized: Sequence[np.ndarray], output_sizes: Sequence[Tuple[int, int]]) -> List[Instances]:
        """One forward of the model on ``resized`` images (of one size): their detections, as :meth:`__call__` says."""
        inputs = [
            {"image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))), "height": h, "width": w}
            for image, (h, w) in zip(resized, output_sizes)
        ]
        results = []
        with self.precision.context():
            outputs = self.model(inputs)
        for output in outputs:
            instances = output["instances"]
            keep = select_detections(
                instances.scores,
                instances.pred_classes,
                instances.pred_boxes.tensor,
                self.score_threshold,
                self.top_k,
                self.nms_iou,
            )
            selected = instances[keep]
            selected.det_tokens = keep
            results.append(selected.to("cpu"))
        return results
