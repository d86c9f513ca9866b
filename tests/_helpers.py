"""Shared test helpers: building variant models and their Hugging Face and original-format peers."""
import os

import torch
from detectron2.config import instantiate

from yolos_d2.config import load_config

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
VARIANTS = ["yolos_ti", "yolos_s", "yolos_s_200ep", "yolos_s_dwr", "yolos_b"]


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
