"""
Pascal VOC (found under ``$DETECTRON2_DATASETS``, as ``VOC2007/`` and ``VOC2012/``), registered
with yolos_d2's checked VOC loader, and detectron2's VOC evaluator: train on 07+12 trainval, test
on 07 test. The rest of the data pipeline is the COCO one. Set
``model.detector.num_classes = VOC_NUM_CLASSES``.
"""
import copy
import os

from detectron2.config import LazyCall as L
from detectron2.evaluation import PascalVOCDetectionEvaluator

from yolos_d2.data import register_voc_dataset

from .coco_data import dataloader as coco_dataloader

VOC_NUM_CLASSES = 20
_ROOT = os.getenv("DETECTRON2_DATASETS", "datasets")


def _voc(year: int, split: str) -> str:
    return register_voc_dataset(f"voc_{year}_{split}_checked", os.path.join(_ROOT, f"VOC{year}"), split, year)


dataloader = copy.deepcopy(coco_dataloader)
dataloader.train.dataset.names = (_voc(2007, "trainval"), _voc(2012, "trainval"))
dataloader.test.dataset.names = _voc(2007, "test")
dataloader.evaluator = L(PascalVOCDetectionEvaluator)(dataset_name="${..test.dataset.names}")
