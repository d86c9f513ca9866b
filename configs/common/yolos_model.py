"""The YOLOS model shared by all variants; each variant sets its backbone size and PE sizes."""
from detectron2.config import LazyCall as L

from yolos_d2.modeling import YOLOS, HungarianMatcher, SetCriterion, ViTWithDetTokens, YOLOSDetector

model = L(YOLOS)(
    detector=L(YOLOSDetector)(
        backbone=L(ViTWithDetTokens)(
            embed_dim=192,
            depth=12,
            num_heads=3,
            patch_size=16,
            mlp_ratio=4.0,
            qkv_bias=True,
            norm_eps=1e-6,
            init_pe_size=(800, 1328),
            mid_pe_size=None,
            num_det_tokens=100,
            use_act_checkpoint=False,
        ),
        # COCO as detectron2 registers it: 80 contiguous classes (see README, "Class ids").
        num_classes=80,
    ),
    # ImageNet mean and std in RGB, 0-255 units, as DeiT was trained with.
    pixel_mean=[123.675, 116.280, 103.530],
    pixel_std=[58.395, 57.120, 57.375],
    input_format="RGB",
    # Padding in whole patches (the augmentations already make each image so).
    size_divisibility="${.detector.backbone.patch_size}",
    # Boxes reaching past the image are kept as predicted: the original's COCO AP is of
    # unclipped boxes, so converted paper weights reproduce it only this way.
    clip_boxes=False,
    # DETR's set loss with its weights, as YOLOS trains. The class count is read from
    # model.detector.num_classes (relative to this node, ".." is model), so set only that one.
    criterion=L(SetCriterion)(
        num_classes="${..detector.num_classes}",
        matcher=L(HungarianMatcher)(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0),
        eos_coef=0.1,
        loss_weights={"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0},
    ),
)
