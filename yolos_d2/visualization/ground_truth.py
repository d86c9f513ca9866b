"""Drawing a dataset's ground-truth boxes and class names on its images with detectron2's ``Visualizer``."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import Metadata
from detectron2.structures import BoxMode, Instances
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer

from .predictions import check_drawing_size

__all__ = ["class_colours", "class_labels", "draw_annotations", "draw_ground_truth", "draw_ground_truth_instances"]

Colour = Tuple[float, float, float]


def class_colours(class_ids: Sequence[int], metadata: Metadata) -> List[Colour]:
    """
    The RGB colour (0..1 each) of each class of ``class_ids``: the metadata's ``thing_colors``
    (0..255 each) where it has one for the class, else detectron2's colour map, in turn by class id.
    """
    given = metadata.get("thing_colors") or []
    palette = colormap(rgb=True, maximum=1)
    return [
        tuple(c / 255 for c in given[i]) if 0 <= i < len(given) else tuple(palette[i % len(palette)])
        for i in class_ids
    ]


def class_labels(class_ids: Sequence[int], metadata: Metadata, crowd: Sequence[bool]) -> List[str]:
    """
    The name (``thing_classes``) of each class of ``class_ids``, "(crowd)" added where ``crowd``
    marks the annotation as a crowd one; "unknown class N" for an id the metadata names no class for.
    """
    names = metadata.get("thing_classes") or []
    labels = [names[i] if 0 <= i < len(names) else f"unknown class {i}" for i in class_ids]
    return [f"{label} (crowd)" if is_crowd else label for label, is_crowd in zip(labels, crowd)]


def draw_ground_truth(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    class_ids: Sequence[int],
    metadata: Metadata,
    crowd: Optional[Sequence[bool]] = None,
    scale: float = 1.0,
) -> np.ndarray:
    """
    Draw boxes with the names of their classes, each class in its colour (:func:`class_colours`).
    Visualizer draws the boxes half transparent: on a black image, a box's edges have half its colour.

    Args:
        image: (H, W, 3) uint8 RGB, the image the boxes are in.
        boxes_xyxy: (N, 4) absolute XYXY boxes in the image's pixels.
        class_ids: (N,) contiguous class ids, 0..C-1, named by ``metadata.thing_classes``.
        crowd: (N,) whether each annotation is a crowd one (labelled so); None: none is.
        scale: the drawing's size relative to the image; ValueError if it is not positive or
            makes a drawing of more than :data:`~yolos_d2.visualization.MAX_DRAWING_PIXELS`.

    Returns:
        (int(H * scale), int(W * scale), 3) uint8 RGB drawing.
    """
    check_drawing_size(image.shape[0], image.shape[1], scale)
    class_ids = [int(i) for i in class_ids]
    crowd = [False] * len(class_ids) if crowd is None else crowd
    visualizer = Visualizer(image, metadata, scale=scale)
    drawn = visualizer.overlay_instances(
        boxes=np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4),
        labels=class_labels(class_ids, metadata, crowd),
        assigned_colors=class_colours(class_ids, metadata),
    )
    return drawn.get_image()


def draw_annotations(
    image: np.ndarray, annotations: Sequence[Dict], metadata: Metadata, scale: float = 1.0
) -> np.ndarray:
    """
    :func:`draw_ground_truth` of the annotations of a detectron2 dataset dict, as registered:
    each one's ``bbox`` (in its ``bbox_mode``), ``category_id`` and ``iscrowd``.
    """
    boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    class_ids = [a["category_id"] for a in annotations]
    crowd = [bool(a.get("iscrowd", 0)) for a in annotations]
    return draw_ground_truth(image, np.asarray(boxes), class_ids, metadata, crowd, scale)


def draw_ground_truth_instances(
    image: np.ndarray, instances: Instances, metadata: Metadata, scale: float = 1.0
) -> np.ndarray:
    """:func:`draw_ground_truth` of a data mapper's ``instances``: their ``gt_boxes`` and ``gt_classes``."""
    boxes = instances.gt_boxes.tensor.cpu().numpy()
    return draw_ground_truth(image, boxes, instances.gt_classes.tolist(), metadata, scale=scale)
