"""
COCO 2017 data: training and evaluation loaders, and the COCO evaluator. detectron2's builtin
``coco_2017_train`` and ``coco_2017_val`` are read from ``$DETECTRON2_DATASETS`` (default
``./datasets``): ``coco/annotations/instances_{train,val}2017.json`` and ``coco/{train,val}2017/``.
"""
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
from omegaconf import OmegaConf

from yolos_d2.data import DatasetMapper, build_train_loader, detr_test_augmentations, detr_train_augmentations
from yolos_d2.evaluation import FastCOCOEvaluator

# Images in COCO train2017, the original's epoch (it keeps images without annotations).
COCO_TRAIN_IMAGES = 118287

dataloader = OmegaConf.create()
dataloader.train = L(build_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_train", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=True,
        # The original's resize: DETR's sizes, each side floored to whole patches.
        augmentations=L(detr_train_augmentations)(
            scales=list(range(480, 801, 16)), size_multiple="${model.detector.backbone.patch_size}"
        ),
        image_format="RGB",
    ),
    total_batch_size=8,
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=L(detr_test_augmentations)(eval_size=800, size_multiple="${model.detector.backbone.patch_size}"),
        image_format="RGB",
    ),
    num_workers=4,
)
# The official COCO AP, computed with faster-coco-eval's COCOeval (in C++, several times faster).
dataloader.evaluator = L(FastCOCOEvaluator)(dataset_name="${..test.dataset.names}")
