"""
Pascal VOC through detectron2's builtin datasets (found under ``$DETECTRON2_DATASETS``, as
``VOC2007/`` and ``VOC2012/``) and its VOC evaluator: train on 07+12 trainval, test on 07 test.
The rest of the data pipeline is the COCO one. Set ``model.detector.num_classes = VOC_NUM_CLASSES``.
"""
import copy

from detectron2.config import LazyCall as L
from detectron2.evaluation import PascalVOCDetectionEvaluator

from .coco_data import dataloader as coco_dataloader

VOC_NUM_CLASSES = 20

dataloader = copy.deepcopy(coco_dataloader)
dataloader.train.dataset.names = ("voc_2007_trainval", "voc_2012_trainval")
dataloader.test.dataset.names = "voc_2007_test"
dataloader.evaluator = L(PascalVOCDetectionEvaluator)(dataset_name="${..test.dataset.names}")
