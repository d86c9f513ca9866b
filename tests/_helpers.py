"""Shared test helpers: building variant models and their Hugging Face and original-format peers."""
import os

import torch
from detectron2.config import instantiate

from yolos_d2.config import load_config

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
VARIANTS = ["yolos_ti", "yolos_s", "yolos_s_200ep", "yolos_s_dwr", "yolos_b"]


# A 2-block YOLOS-Ti with 12 tokens evaluated at 64 (longer side at most 106): predictions in seconds.
SMALL_PREDICTOR = [
    "model.detector.backbone.depth=2",
    "model.detector.backbone.init_pe_size=[64,96]",
    "model.detector.backbone.num_det_tokens=12",
    "dataloader.test.mapper.augmentations.eval_size=64",
]


def favour_class_0(model) -> None:
    """Bias a random model's class head to class 0, so that its tokens score from about 0.1 to 0.95."""
    with torch.no_grad():
        model.detector.class_embed.layers[-1].bias[0] += 5
        model.detector.class_embed.layers[-1].weight[0] *= 20


def config_path(name: str) -> str:
    return os.path.join(CONFIG_DIR, f"{name}.py")


def build_model(name: str, overrides=()):
    """The model of ``configs/<name>.py`` with the overrides (strictly applied), seeded, in eval mode."""
    torch.manual_seed(0)
    return instantiate(load_config(config_path(name), overrides).model).eval()


def coco_rows():
    from yolos_d2.checkpoint.converters import coco_class_head_rows

    return coco_class_head_rows()


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def synthetic_splits(root: str, specs):
    """Generate each ``SyntheticShapesSpec`` of ``specs`` (name -> spec) under ``root``; name -> (json, images)."""
    from yolos_d2.data.synthetic_shapes import generate_synthetic_shapes, split_files

    splits = {}
    for name, spec in specs.items():
        generate_synthetic_shapes(spec, root)
        splits[name] = split_files(spec, root)
    return splits
