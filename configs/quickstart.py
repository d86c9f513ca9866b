"""
Quick start: a small YOLOS trained from scratch on the synthetic shapes dataset (generated on
first use, see yolos_d2/data/synthetic_shapes.py), in about ten minutes on two CPU cores:

    python train_net.py --config-file configs/quickstart.py

It ends with the COCO evaluation of the 300 validation images and draws predictions on a few of
them into ``<train.output_dir>/predictions``.
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
from omegaconf import OmegaConf

from yolos_d2.data import DatasetMapper, build_train_loader
from yolos_d2.evaluation import FastCOCOEvaluator

from .common.optim import lr_multiplier, optimizer
from .common.train import train
from .common.yolos_model import model

model.detector.backbone.update(
    embed_dim=192,
    depth=4,
    num_heads=3,
    init_pe_size=(128, 128),
    # Up to 3 objects per image: 5 tokens leave fewer unmatched ones to learn "no object" and
    # fewer duplicate boxes than 10 (docs/training.md, "The quick-start recipe").
    num_det_tokens=5,
    # Learned from scratch, patch position embeddings need a 2-D layout to start from.
    pos_embed_init="sincos",
)
model.detector.num_classes = 3
# Trained here, not compared with a paper: boxes clipped to the image, as detectron2's models do.
model.clip_boxes = True
# DETR weighs "no object" 0.1 for 100 queries against about 7 objects; with 5 tokens against 2
# objects that weight leaves duplicate boxes scoring high.
model.criterion.eos_coef = 0.5

dataloader = OmegaConf.create()
dataloader.train = L(build_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="synthetic_shapes_train"),
    mapper=L(DatasetMapper)(is_train=True, augmentations=[L(T.RandomFlip)(horizontal=True)], image_format="RGB"),
    total_batch_size=16,
    num_workers=0,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="synthetic_shapes_val", filter_empty=False),
    mapper=L(DatasetMapper)(is_train=False, augmentations=[], image_format="RGB"),
    num_workers=0,
)
dataloader.evaluator = L(FastCOCOEvaluator)(dataset_name="${..test.dataset.names}")

optimizer.update(lr=3e-4, fused=True)
lr_multiplier.warmup_iters = 200
train.update(
    output_dir="./output/quickstart",
    # About ten minutes on 2 CPU cores with the data generation and the evaluation; other
    # recipes tried in that time are in docs/training.md, "The quick-start recipe".
    max_iter=3600,
    # bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX): twice as fast a step, AP
    # within 1 of float32 over 3 seeds (docs/training.md, "The quick-start recipe"); float32 elsewhere.
    amp=dict(dtype="auto"),
    seed=0,
    eval_period="${.max_iter}",
    checkpointer=dict(period="${..max_iter}", max_to_keep=2),
    prediction_images=dict(output_dir="${train.output_dir}/predictions", num_images=8, scale=4.0),
)
