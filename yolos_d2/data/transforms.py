"""
The DETR data augmentation, which YOLOS trains and evaluates with, as detectron2 augmentations,
with the original YOLOS sizes: each resized side is floored to a multiple of the patch size.

Use the lists of :func:`detr_train_augmentations` and :func:`detr_test_augmentations` as the
``augmentations`` of detectron2's ``DatasetMapper``: it clips the transformed boxes to the
image, drops empty boxes and, in training, crowd annotations, as DETR's dataset does.

:class:`EvalResize` is the test-time resize of a config, with an optional cap on the longer side,
as the predictor, the exported pipeline and the model summary apply it.
"""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import transforms as T
from PIL import Image

# The original YOLOS floors resized sides to whole 16-pixel patches.
DEFAULT_SIZE_MULTIPLE = 16

# The longer side, in pixels, that the predictor and the exported pipeline cap images at by
# default: DETR's test-time maximum. The attention's memory grows with the square of the pixel count.
DEFAULT_MAX_SIZE = 1333

Side = Union[int, torch.Tensor]


class _ResizeTransform(T.ResizeTransform):
    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        # detectron2's scales ``coords`` in place, which truncates integer coordinates (boxes of a
        # dataset dict given as lists of ints) and changes the caller's array.
        return super().apply_coords(coords.astype(np.float64))


class DETRResizeShortestEdge(T.Augmentation):
    """
    Resize the shorter side to a length chosen uniformly from ``short_edge_length`` while keeping
    the aspect ratio, unless the longer side would exceed ``max_size``: then to the length that
    makes the longer side about ``max_size``. Each side is then floored to a multiple of
    ``size_multiple``. Unlike :class:`detectron2.data.transforms.ResizeShortestEdge`, output
    sizes are the original YOLOS's, see :meth:`get_output_shape`.
    """

    def __init__(
        self,
        short_edge_length: Union[int, Sequence[int]],
        max_size: Optional[int] = None,
        size_multiple: int = DEFAULT_SIZE_MULTIPLE,
    ):
        """
        Args:
            short_edge_length: shorter-side lengths in pixels to choose from.
            max_size: the cap on the longer side in pixels, at least ``size_multiple``; None for no cap.
            size_multiple: each output side is floored to a multiple of it, in pixels (and is at
                least one multiple); 1 gives DETR's sizes.
        """
        super().__init__()
        short_edge_length = (short_edge_length,) if isinstance(short_edge_length, int) else tuple(short_edge_length)
        if len(short_edge_length) == 0 or min(short_edge_length) <= 0:
            raise ValueError(f"short_edge_length must be positive lengths, got {short_edge_length}")
        if size_multiple <= 0:
            raise ValueError(f"size_multiple must be a positive number of pixels, got {size_multiple}")
        if max_size is not None and max_size < size_multiple:
            raise ValueError(f"max_size={max_size} must be None or at least size_multiple={size_multiple} pixels")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        size = int(np.random.choice(self.short_edge_length))
        newh, neww = self.get_output_shape(h, w, size, self.max_size, self.size_multiple)
        # PIL's bilinear resize, as torchvision's resize of the PIL images in the original; boxes
        # scale by each side's own ratio.
        return _ResizeTransform(h, w, newh, neww, Image.BILINEAR)

    @staticmethod
    def get_output_shape(
        oldh: Side, oldw: Side, short_edge_length: int, max_size: Optional[int], size_multiple: int = 1
    ) -> Tuple[Side, Side]:
        """
        The (height, width) in pixels of an (oldh, oldw) image resized: DETR's
        ``get_size_with_aspect_ratio`` (the capped shorter side rounded, the longer side floored,
        where :meth:`ResizeShortestEdge.get_output_shape` rounds both: 480x640 to 512 is 512x682,
        not 683), then, as the original YOLOS's ``resize``, each side floored to a multiple of
        ``size_multiple`` (512x682 becomes 512x672 with 16). A side never goes below one multiple.

        ``oldh`` and ``oldw`` may be 0-d tensors, e.g. an image's symbolic size while exporting:
        the sides are then 0-d int64 tensors. The rule is computed in float64 tensor operations
        in either case, which give the results of DETR's Python floats (IEEE double arithmetic,
        rounding half to even), without branching on the sizes.
        """
        h, w = (torch.as_tensor(side, dtype=torch.float64) for side in (oldh, oldw))
        short, long = torch.minimum(h, w), torch.maximum(h, w)
        size = torch.tensor(float(short_edge_length), dtype=torch.float64)
        if max_size is not None:
            size = torch.where(long / short * size > max_size, torch.round(max_size * short / long), size)
        # The shorter side becomes `size`, the longer one size * long / short floored; a shorter
        # side already of length `size` keeps both sides (size * side / short is then side).
        sides = [torch.floor(size * side / short).long() for side in (h, w)]
        sides = [torch.clamp(side - side % size_multiple, min=size_multiple) for side in sides]
        if isinstance(oldh, torch.Tensor) or isinstance(oldw, torch.Tensor):
            return sides[0], sides[1]
        return int(sides[0]), int(sides[1])


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


def detr_train_augmentations(
    scales: Sequence[int], max_size: Optional[int] = None, size_multiple: int = DEFAULT_SIZE_MULTIPLE
) -> List[T.Augmentation]:
    """
    The original YOLOS's (DETR's) training augmentation: a horizontal flip with probability 0.5,
    then with probability 0.5 either a resize to ``scales``, or a resize of the shorter side to
    400, 500 or 600, a random crop of 384 to 600 pixels each side and the resize to ``scales``.
    Each resize floors the sides to multiples of ``size_multiple``.

    Args:
        scales: shorter-side lengths in pixels, each at least ``size_multiple``.
        max_size: the cap on the longer side in pixels after the resize to ``scales``, at least
            ``size_multiple``; by default ``max(scales) * 1333 // 800``.
        size_multiple: see :class:`DETRResizeShortestEdge`; the model's patch size.
    """
    if len(scales) == 0 or min(scales) < size_multiple:
        raise ValueError(f"scales={scales} must be lengths of at least size_multiple={size_multiple} pixels")
    if max_size is None:
        max_size = max(scales) * 1333 // 800
    resize = DETRResizeShortestEdge(scales, max_size, size_multiple)
    return [
        T.RandomFlip(horizontal=True),
        RandomSelect(
            [resize],
            [
                DETRResizeShortestEdge([400, 500, 600], size_multiple=size_multiple),
                T.RandomCrop("absolute_range", (384, 600)),
                resize,
            ],
        ),
    ]


def detr_test_augmentations(eval_size: int, size_multiple: int = DEFAULT_SIZE_MULTIPLE) -> List[T.Augmentation]:
    """
    The original YOLOS's test-time resize: the shorter side to ``eval_size`` pixels, the longer
    side at most ``eval_size * 1333 // 800``, each side floored to a multiple of ``size_multiple``.
    """
    if eval_size < size_multiple:
        raise ValueError(f"eval_size={eval_size} must be at least size_multiple={size_multiple} pixels")
    return [DETRResizeShortestEdge(eval_size, eval_size * 1333 // 800, size_multiple)]


class EvalResize:
    """
    The test-time resize of a config, in one resize: the size its test augmentations give an image
    (none: the image's own; one :class:`DETRResizeShortestEdge` of one shorter-side length: its
    :meth:`~DETRResizeShortestEdge.get_output_shape`), then, if the longer side of that size
    exceeds ``max_size``, that size scaled to a longer side of ``max_size`` (each side rounded,
    at least 1 pixel). The image is resized from its own size to the result at once, with PIL's
    bilinear filter as the data mapper's resize.

    Attributes:
        detr_resize: the config's :class:`DETRResizeShortestEdge`, or None.
        max_size: the cap on the longer side in pixels; None or 0: no cap.
    """

    def __init__(self, augmentations: Sequence[T.Augmentation], max_size: Optional[int] = None):
        """
        Args:
            augmentations: the config's test augmentations, built
                (``dataloader.test.mapper.augmentations``).
            max_size: see the class description.

        Raises:
            ValueError for other augmentations or a negative ``max_size``.
        """
        augmentations = list(augmentations)
        one_resize = (
            len(augmentations) == 1
            and isinstance(augmentations[0], DETRResizeShortestEdge)
            and len(augmentations[0].short_edge_length) == 1
        )
        if augmentations and not one_resize:
            raise ValueError(
                "dataloader.test.mapper.augmentations must be one DETRResizeShortestEdge with one shorter-side "
                f"length (e.g. detr_test_augmentations), or none; got {augmentations}"
            )
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be None, 0 (no cap) or a positive number of pixels, got {max_size}")
        self.detr_resize: Optional[DETRResizeShortestEdge] = augmentations[0] if augmentations else None
        self.max_size = max_size

    @classmethod
    def from_config(cls, cfg, max_size: Optional[int] = None) -> "EvalResize":
        """The resize of ``cfg.dataloader.test.mapper.augmentations``, capped at ``max_size``."""
        return cls(instantiate(cfg.dataloader.test.mapper.augmentations), max_size)

    @property
    def keeps_every_size(self) -> bool:
        """Whether every image keeps its size: no resize in the config and no cap."""
        return self.detr_resize is None and not self.max_size

    def config_shape(self, height: Side, width: Side) -> Tuple[Side, Side]:
        """The (height, width) in pixels that the config's augmentations alone give an image of (height, width)."""
        resize = self.detr_resize
        if resize is None:
            return height, width
        return resize.get_output_shape(height, width, resize.short_edge_length[0], resize.max_size, resize.size_multiple)

    def is_capped(self, height: int, width: int) -> bool:
        """Whether ``max_size`` changes the size of an image of (height, width) pixels."""
        return bool(self.max_size) and max(self.config_shape(height, width)) > self.max_size

    def output_shape(self, height: Side, width: Side) -> Tuple[Side, Side]:
        """
        The (height, width) in pixels of an image of (height, width) resized. ``height`` and
        ``width`` may be 0-d tensors (an image's symbolic size while exporting): the sides are
        then 0-d int64 tensors, computed without branching on the sizes.
        """
        height, width = self.config_shape(height, width)
        if not self.max_size:
            return height, width
        sides = [torch.as_tensor(side, dtype=torch.int64) for side in (height, width)]
        longer = torch.maximum(*sides)
        capped = [torch.clamp((side * self.max_size + longer // 2) // longer, min=1) for side in sides]
        sides = [torch.where(longer > self.max_size, cap, side) for cap, side in zip(capped, sides)]
        if isinstance(height, torch.Tensor) or isinstance(width, torch.Tensor):
            return sides[0], sides[1]
        return int(sides[0]), int(sides[1])

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) uint8 -> (H', W', C) uint8, ``(H', W') = output_shape(H, W)``; the image itself if they are equal."""
        height, width = image.shape[:2]
        new_height, new_width = self.output_shape(height, width)
        if (new_height, new_width) == (height, width):
            return image
        return _ResizeTransform(height, width, new_height, new_width, Image.BILINEAR).apply_image(image)
