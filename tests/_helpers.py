"""Shared test helpers: building variant models and their Hugging Face and original-format peers."""
import os

import torch
from detectron2.config import LazyConfig, instantiate

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
VARIANTS = ["yolos_ti", "yolos_s", "yolos_s_200ep", "yolos_s_dwr", "yolos_b"]


def config_path(name: str) -> str:
    return os.path.join(CONFIG_DIR, f"{name}.py")


def load_config(name: str, overrides=()):
    return LazyConfig.apply_overrides(LazyConfig.load(config_path(name)), list(overrides))


def build_model(name: str, overrides=()):
    torch.manual_seed(0)
    return instantiate(load_config(name, overrides).model).eval()


def hf_config_like(backbone_cfg, num_labels: int = 91):
    """A transformers ``YolosConfig`` mirroring a ``ViTWithDetTokens`` config."""
    from transformers import YolosConfig

    assert backbone_cfg.mid_pe_size is None or tuple(backbone_cfg.mid_pe_size) == tuple(backbone_cfg.init_pe_size)
    return YolosConfig(
        hidden_size=backbone_cfg.embed_dim,
        num_hidden_layers=backbone_cfg.depth,
        num_attention_heads=backbone_cfg.num_heads,
        intermediate_size=int(backbone_cfg.embed_dim * backbone_cfg.mlp_ratio),
        image_size=list(backbone_cfg.init_pe_size),
        patch_size=backbone_cfg.patch_size,
        num_detection_tokens=backbone_cfg.num_det_tokens,
        use_mid_position_embeddings=backbone_cfg.mid_pe_size is not None,
        layer_norm_eps=backbone_cfg.norm_eps,
        qkv_bias=backbone_cfg.qkv_bias,
        num_labels=num_labels,
    )


def random_hf_model(hf_config, seed: int = 0):
    """A randomly initialised ``YolosForObjectDetection`` whose position and det tokens are not zero."""
    from transformers import YolosForObjectDetection

    torch.manual_seed(seed)
    model = YolosForObjectDetection(hf_config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "position_embeddings" in name or "tokens" in name or "cls_token" in name:
                param.normal_(std=0.02)
    return model


def coco_rows():
    from yolos_d2.checkpoint.converters import coco_class_head_rows

    return coco_class_head_rows()


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()
