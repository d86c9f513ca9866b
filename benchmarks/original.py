"""
The original implementation's backbone (``models/backbone.py`` of a local checkout of
github.com/hustvl/YOLOS) holding a yolos_d2 detector's weights, to time it side by side.
"""
import collections.abc
import contextlib
import importlib
import os
import sys
import types
from functools import partial
from typing import Iterator

import torch
import torch.nn as nn

from yolos_d2.modeling import YOLOSDetector

__all__ = ["original_detector"]

_PACKAGE = "yolos_original_models"


@contextlib.contextmanager
def _torch_six() -> Iterator[None]:
    """
    Inside, ``torch._six`` (removed in torch 2.0) can be imported, with the ``container_abcs`` the
    original's layers take from it: ``collections.abc``. Imports keep what they took; the module goes.
    """
    if "torch._six" in sys.modules:
        yield
        return
    six = types.ModuleType("torch._six")
    six.container_abcs = collections.abc
    sys.modules["torch._six"] = six
    try:
        yield
    finally:
        del sys.modules["torch._six"]


def _import_original_backbone(repo: str) -> types.ModuleType:
    models_dir = os.path.join(repo, "models")
    if not os.path.isfile(os.path.join(models_dir, "backbone.py")):
        raise FileNotFoundError(f"{repo!r} is not a checkout of hustvl/YOLOS: it has no models/backbone.py")
    # Import models/ as a package without its __init__, which pulls in the training code; it stays
    # registered, so that its other modules (detector.py, matcher.py) can be imported after.
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [models_dir]
    sys.modules.setdefault(_PACKAGE, package)
    with _torch_six():
        return importlib.import_module(f"{_PACKAGE}.backbone")


class _OriginalDetector(nn.Module):
    """The original backbone with a yolos_d2 detector's heads; same outputs as ``YOLOSDetector``."""

    def __init__(self, backbone: nn.Module, heads: YOLOSDetector):
        super().__init__()
        self.backbone = backbone
        self.class_embed = heads.class_embed
        self.bbox_embed = heads.bbox_embed

    def forward(self, images: torch.Tensor):
        tokens = self.backbone(images)
        return {"pred_logits": self.class_embed(tokens), "pred_boxes": self.bbox_embed(tokens).sigmoid()}


def original_detector(repo: str, ours: YOLOSDetector) -> nn.Module:
    """The original ``VisionTransformer`` holding ``ours``' backbone weights."""
    ours_backbone = ours.backbone
    block = ours_backbone.blocks[0]
    vit = _import_original_backbone(repo).VisionTransformer(
        patch_size=ours_backbone.patch_size,
        embed_dim=ours_backbone.embed_dim,
        depth=ours_backbone.depth,
        num_heads=block.attn.num_heads,
        mlp_ratio=block.mlp.fc1.out_features / ours_backbone.embed_dim,
        qkv_bias=block.attn.qkv.bias is not None,
        norm_layer=partial(nn.LayerNorm, eps=block.norm1.eps),
    )
    def pixels(grid):
        return None if grid is None else [n * ours_backbone.patch_size for n in grid]

    vit.finetune_det(
        img_size=pixels(ours_backbone.init_grid),
        det_token_num=ours_backbone.num_det_tokens,
        mid_pe_size=pixels(ours_backbone.mid_grid),
    )
    state = {k: v for k, v in ours_backbone.state_dict().items() if k != "det_pos_embed"}
    # The original keeps [CLS], patch and [DET] position embeddings in one table.
    state["pos_embed"] = torch.cat([ours_backbone.pos_embed, ours_backbone.det_pos_embed], dim=1)
    vit.load_state_dict(state)
    return _OriginalDetector(vit, ours)
