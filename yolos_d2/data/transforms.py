"""
The DETR data augmentation, which YOLOS trains and evaluates with, as detectron2 augmentations.

Use the lists of :func:`detr_train_augmentations` and :func:`detr_test_augmentations` as the
``augmentations`` of detectron2's ``DatasetMapper``: it clips the transformed boxes to the
image, drops empty boxes and, in training, crowd annotations, as DETR's dataset does.
"""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from detectron2.data import transforms as T
from PIL import Image

# The smallest image side YOLOS accepts: one 16-pixel patch.
MIN_SIZE = 16


class _ResizeTransform(T.ResizeTransform):
    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        # detectron2's scales ``coords`` in place, which truncates integer coordinates (boxes of a
        # dataset dict given as lists of ints) and changes the caller's array.
        return super().apply_coords(coords.astype(np.float64))


class DETRResizeShortestEdge(T.Augmentation):
    """
    Resize the shorter side to a length chosen uniformly from ``short_edge_length`` while keeping
    the aspect ratio, unless the longer side would exceed ``max_size``: then to the length that
    makes the longer side about ``max_size``. Unlike :class:`detectron2.data.transforms.ResizeShortestEdge`, output
    sizes are DETR's, see :meth:`get_output_shape`.
    """

    def __init__(self, short_edge_length: Union[int, Sequence[int]], max_size: Optional[int] = None):
        """
        Args:
            short_edge_length: shorter-side lengths in pixels to choose from.
            max_size: the cap on the longer side in pixels; None for no cap.
        """
        super().__init__()
        short_edge_length = (short_edge_length,) if isinstance(short_edge_length, int) else tuple(short_edge_length)
        if len(short_edge_length) == 0 or min(short_edge_length) <= 0:
            raise ValueError(f"short_edge_length must be positive lengths, got {short_edge_length}")
        if max_size is not None and max_size <= 0:
            raise ValueError(f"max_size must be positive or None, got {max_size}")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        newh, neww = self.get_output_shape(h, w, int(np.random.choice(self.short_edge_length)), self.max_size)
        # PIL's bilinear resize, as torchvision's resize of the PIL images in DETR.
        return _ResizeTransform(h, w, newh, neww, Image.BILINEAR)

    @staticmethod
    def get_output_shape(oldh: int, oldw: int, short_edge_length: int, max_size: Optional[int]) -> Tuple[int, int]:
        """
        DETR's ``get_size_with_aspect_ratio``: the (height, width) in pixels of an (oldh, oldw)
        image resized. The capped shorter side is rounded and the longer side floored, where
        :meth:`ResizeShortestEdge.get_output_shape` rounds both (480x640 to 512: 512x682, not 683).
        """
        size = short_edge_length
        short, long = min(oldh, oldw), max(oldh, oldw)
        if max_size is not None and long / short * size > max_size:
            size = int(round(max_size * short / long))
        if short == size:
            return oldh, oldw
        if oldw < oldh:
            return int(size * oldh / oldw), size
        return size, int(size * oldw / oldh)


class RandomSelect(T.Augmentation):
    """
    Apply the augmentations ``first`` with probability ``prob``, otherwise those of ``second``.
    """

    def __init__(self, first: Sequence[T.Augmentation], second: Sequence[T.Augmentation], prob: float = 0.5):
        """
        Args:
            first, second: augmentations (or transforms), applied in order.
            prob: the probability of ``first``, in [0, 1].
        """
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.first = T.AugmentationList(first)
        self.second = T.AugmentationList(second)
        self.prob = prob

    def __call__(self, aug_input: T.AugInput) -> T.Transform:
        chosen = self.first if self._rand_range() < self.prob else self.second
        return chosen(aug_input)


def detr_train_augmentations(scales: Sequence[int], max_size: Optional[int] = None) -> List[T.Augmentation]:
    """
    DETR's training augmentation: a horizontal flip with probability 0.5, then with probability
    0.5 either a resize to ``scales``, or a resize of the shorter side to 400, 500 or 600, a
    random crop of 384 to 600 pixels each side and the resize to ``scales``.

    Args:
        scales: shorter-side lengths in pixels, each at least ``MIN_SIZE``.
        max_size: the cap on the longer side in pixels after the resize to ``scales``;
            by default ``max(scales) * 1333 // 800``.
    """
    if len(scales) == 0 or min(scales) < MIN_SIZE:
        raise ValueError(f"scales must be lengths of at least {MIN_SIZE} pixels, got {scales}")
    if max_size is None:
        max_size = max(scales) * 1333 // 800
    resize = DETRResizeShortestEdge(scales, max_size)
    return [
        T.RandomFlip(horizontal=True),
        RandomSelect(
            [resize],
            [DETRResizeShortestEdge([400, 500, 600]), T.RandomCrop("absolute_range", (384, 600)), resize],
        ),
    ]


def detr_test_augmentations(eval_size: int) -> List[T.Augmentation]:
    """
    DETR's test-time resize: the shorter side to ``eval_size`` pixels, the longer side at most
    ``eval_size * 1333 // 800``.
    """
    if eval_size < MIN_SIZE:
        raise ValueError(f"eval_size must be at least {MIN_SIZE} pixels, got {eval_size}")
    return [DETRResizeShortestEdge(eval_size, eval_size * 1333 // 800)]
