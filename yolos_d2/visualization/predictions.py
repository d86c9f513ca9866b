"""Drawing predictions on images with detectron2's ``Visualizer``."""
import math
import numbers
from typing import Tuple

import numpy as np
from detectron2.data import Metadata
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

__all__ = ["MAX_DRAWING_PIXELS", "check_drawing_size", "draw_predictions"]

# The largest drawing made, in pixels (8192 x 4096). Visualizer's matplotlib canvas peaks at
# about 130 bytes per pixel of the drawing (float64 RGBA resampling and copies; measured on
# 3000x2000 drawings): about 4 GiB here.
MAX_DRAWING_PIXELS = 2**25


def check_drawing_size(height: int, width: int, scale: float) -> Tuple[int, int]:
    """
    The (height, width) in pixels of the drawing of an image of (height, width) at ``scale``;
    ValueError if ``scale`` is not a positive number or the drawing would have more than
    :data:`MAX_DRAWING_PIXELS` pixels.
    """
    if not (isinstance(scale, numbers.Real) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    drawn_height, drawn_width = int(height * scale), int(width * scale)
    if drawn_height * drawn_width > MAX_DRAWING_PIXELS:
        raise ValueError(
            f"scale {scale:g} would draw the {width}x{height} image at {drawn_width}x{drawn_height} pixels, "
            f"more than the {MAX_DRAWING_PIXELS} a drawing may have: use a smaller scale"
        )
    return drawn_height, drawn_width


def draw_predictions(
    image: np.ndarray,
    instances: Instances,
    metadata: Metadata,
    score_threshold: float = 0.5,
    scale: float = 1.0,
    image_format: str = "RGB",
) -> np.ndarray:
    """
    Draw the boxes, class names and scores of the predictions scoring at least ``score_threshold``.

    Args:
        image: (H, W, 3) uint8 in ``image_format`` ("RGB" or "BGR"), the image the boxes of
            ``instances`` are in.
        instances: on the CPU, with ``pred_boxes`` (absolute XYXY), ``scores``, ``pred_classes``.
        metadata: names the classes (``thing_classes``); class ids are shown without it.
        scale: the drawing's size relative to the image (enlarge small images so that labels
            stay readable); ValueError if it is not positive or makes a drawing of more than
            :data:`MAX_DRAWING_PIXELS` (:func:`check_drawing_size`).

    Returns:
        (int(H * scale), int(W * scale), 3) uint8 RGB drawing.
    """
    check_drawing_size(image.shape[0], image.shape[1], scale)
    instances = instances[instances.scores >= score_threshold]
    rgb = image[:, :, ::-1] if image_format == "BGR" else image
    return Visualizer(rgb, metadata, scale=scale).draw_instance_predictions(instances).get_image()
