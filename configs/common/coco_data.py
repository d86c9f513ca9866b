"""COCO 2017 data: training and evaluation loaders, and the COCO evaluator."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import COCOEvaluator
from omegaconf import OmegaConf

# Images in COCO train2017, the original's epoch (it keeps images without annotations).
COCO_TRAIN_IMAGES = 118287


def epochs_to_iters(epochs: int, total_batch_size: int) -> int:
    """Iterations of ``epochs`` passes over COCO train2017, dropping each epoch's last partial batch."""
    return epochs * (COCO_TRAIN_IMAGES // total_batch_size)


def eval_resize(eval_size: int):
    """Test-time resize: shorter side to ``eval_size``, longer side at most ``eval_size * 1333 // 800``."""
    return L(T.ResizeShortestEdge)(short_edge_length=eval_size, max_size=eval_size * 1333 // 800)


def train_resize(first: int, last: int):
    """
    Training resize: shorter side to one of ``first..last`` step 16 (the original's scales),
    longer side at most ``last * 1333 // 800``.
    """
    return L(T.ResizeShortestEdge)(
        short_edge_length=list(range(first, last + 1, 16)), max_size=last * 1333 // 800, sample_style="choice"
    )


dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_train", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[L(T.RandomFlip)(horizontal=True), train_resize(480, 800)],
        image_format="RGB",
    ),
    total_batch_size=8,
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False),
    mapper=L(DatasetMapper)(is_train=False, augmentations=[eval_resize(800)], image_format="RGB"),
    num_workers=4,
)
# The pure-Python COCOeval: the fast one needs detectron2's compiled extension.
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", use_fast_impl=False)
