from .build import ResumableTrainingSampler, build_train_loader
from .images import image_to_array, read_image
from .mapper import DatasetMapper
from .datasets import check_datasets, check_num_classes, register_coco_dataset, register_voc_dataset
from .synthetic_shapes import SYNTHETIC_SHAPES_CLASSES, generate_synthetic_shapes, register_synthetic_shapes
from .validation import DatasetError
from .transforms import (
    DEFAULT_MAX_SIZE,
    DETRResizeShortestEdge,
    EvalResize,
    RandomSelect,
    detr_test_augmentations,
    detr_train_augmentations,
)

register_synthetic_shapes()

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DatasetError",
    "DatasetMapper",
    "DETRResizeShortestEdge",
    "EvalResize",
    "RandomSelect",
    "ResumableTrainingSampler",
    "SYNTHETIC_SHAPES_CLASSES",
    "build_train_loader",
    "check_datasets",
    "check_num_classes",
    "detr_test_augmentations",
    "detr_train_augmentations",
    "generate_synthetic_shapes",
    "image_to_array",
    "read_image",
    "register_coco_dataset",
    "register_synthetic_shapes",
    "register_voc_dataset",
]
