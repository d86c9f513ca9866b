"""
What the tools share: a LazyConfig with overrides, the trained model it describes, and running
that model on single images the way detectron2's ``DefaultPredictor`` does for yacs configs.
"""
import argparse
import logging
import re
import sys
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, Metadata, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import Instances
from detectron2.utils.logger import log_first_n
from omegaconf import DictConfig

from ..checkpoint import YOLOSCheckpointer
from ..config import ConfigError, check_config, load_config
from ..data import check_num_classes
from ..modeling import YOLOS

__all__ = [
    "DEFAULT_MAX_SIZE",
    "YOLOSPredictor",
    "add_config_arguments",
    "add_predictor_arguments",
    "build_inference_model",
    "load_config_or_exit",
    "metadata_of_test_dataset",
    "parse_args",
]


# A config override: a dotted key, "=", a value.
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")

# Longest image side, in pixels, the predictor gives the model by default: DETR's test-time
# maximum. The attention's memory grows with the square of the pixel count.
DEFAULT_MAX_SIZE = 1333


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config-file`` and the ``KEY=VALUE`` config overrides, as ``train_net.py`` takes them."""
    parser.add_argument("--config-file", required=True, metavar="FILE", help="a LazyConfig, e.g. configs/quickstart.py")
    parser.add_argument(
        "opts",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, anywhere on the command line, e.g. train.init_checkpoint=model_final.pth",
    )


def add_predictor_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-size``, the :class:`YOLOSPredictor` argument of the same name."""
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        metavar="PIXELS",
        help="scale images whose longer side is still longer than this after the config's test-time resize "
        f"down to it (default {DEFAULT_MAX_SIZE}; 0: no limit)",
    )


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """
    Parse ``argv`` (default ``sys.argv[1:]``) with a parser given :func:`add_config_arguments`.
    Every ``KEY=VALUE`` argument whose key is a dotted name goes to ``opts`` wherever it is, also
    after an option taking a list (``--input a.png b.png train.init_checkpoint=model.pth``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args([a for a in argv if not _OVERRIDE.match(a)])
    args.opts = [a for a in argv if _OVERRIDE.match(a)]
    return args


def load_config_or_exit(parser: argparse.ArgumentParser, config_file: str, overrides: Sequence[str] = ()) -> DictConfig:
    """
    The config in ``config_file`` with ``KEY=VALUE`` ``overrides``, loaded and checked by
    :mod:`yolos_d2.config`; a mistake in it ends the command with ``parser.error`` naming it.
    """
    try:
        cfg = load_config(config_file, overrides)
        check_config(cfg)
    except ConfigError as e:
        parser.error(str(e))
    return cfg


def build_inference_model(cfg) -> YOLOS:
    """``cfg.model`` on ``cfg.train.device`` with the weights of ``cfg.train.init_checkpoint``, in eval mode."""
    if not cfg.train.init_checkpoint:
        raise ValueError(
            "train.init_checkpoint is empty: give the weights to run, e.g. "
            "train.init_checkpoint=output/quickstart/model_final.pth"
        )
    model = instantiate(cfg.model).to(cfg.train.device).eval()
    YOLOSCheckpointer(model).load(cfg.train.init_checkpoint)
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
