"""Drawing predictions on images with detectron2's ``Visualizer``."""
import numpy as np
from detectron2.data import Metadata
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

__all__ = ["draw_predictions"]


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
            stay readable).

    Returns:
        (int(H * scale), int(W * scale), 3) uint8 RGB drawing.
    """
    instances = instances[instances.scores >= score_threshold]
    rgb = image[:, :, ::-1] if image_format == "BGR" else image
    return Visualizer(rgb, metadata, scale=scale).draw_instance_predictions(instances).get_image()
