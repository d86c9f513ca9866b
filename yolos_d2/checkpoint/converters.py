"""
Conversion of DeiT/ViT, original YOLOS and Hugging Face YOLOS weights to yolos_d2's parameter names.

Each converter returns the state dict of a :class:`yolos_d2.modeling.YOLOS` model (keys under
``detector.``) and the names of the source keys it left out.
"""
import json
import logging
import os
import re
from typing import Dict, List, Optional, Tuple

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from ..modeling.position_embedding import Grid, resize_patch_pos_embed, square_grid
from .io import load_weights_file, state_dict_of

logger = logging.getLogger(__name__)

StateDict = Dict[str, torch.Tensor]
BACKBONE = "detector.backbone."

# The model's tensors (or modules) that each source format does not have: a checkpoint converted
# from it records them under "new_keys", and YOLOSCheckpointer lets them keep the model's
# initialisation instead of reporting them missing.
NEW_KEYS = {
    "deit": [
        BACKBONE + "det_token",
        BACKBONE + "det_pos_embed",
        BACKBONE + "mid_pos_embed",
        "detector.class_embed",
        "detector.bbox_embed",
    ],
    "yolos": [],
    "hf": [],
}

# Keys of a DeiT/timm ViT that YOLOS uses, with the same names.
_VIT_KEY = re.compile(r"^(cls_token|patch_embed\.proj\.(weight|bias)|blocks\.\d+\..+|norm\.(weight|bias))$")


def coco_class_head_rows() -> List[int]:
    """
    Rows to keep from a class head over COCO's 91 category ids + no-object (92 outputs, as in the
    original YOLOS and Hugging Face checkpoints) to get detectron2's 80 contiguous classes +
    no-object, in detectron2's order.
    """
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    return [c["id"] for c in COCO_CATEGORIES if c["isthing"]] + [91]


def remap_coco_class_head(state: StateDict, keep_class_ids: bool = False) -> StateDict:
    """Turn a 92-output COCO class head into an 81-output one, unless ``keep_class_ids``."""
    last = max(int(k.split(".")[3]) for k in state if k.startswith("detector.class_embed.layers."))
    weight, bias = f"detector.class_embed.layers.{last}.weight", f"detector.class_embed.layers.{last}.bias"
    if keep_class_ids or state[weight].shape[0] != 92:
        return state
    rows = torch.tensor(coco_class_head_rows())
    logger.info("Class head: kept the rows of COCO's 80 thing classes and no-object (92 -> 81 outputs).")
    return {**state, weight: state[weight][rows], bias: state[bias][rows]}


def split_pos_embed(pos_embed: torch.Tensor, num_det_tokens: int) -> StateDict:
    """
    (1, 1 + G + K, D) position embeddings of [CLS], patches, [DET] -> the backbone's ``pos_embed``
    (1, 1 + G, D) and ``det_pos_embed`` (1, K, D).
    """
    num_tokens = pos_embed.shape[1]
    return {
        BACKBONE + "pos_embed": pos_embed[:, : num_tokens - num_det_tokens],
        BACKBONE + "det_pos_embed": pos_embed[:, num_tokens - num_det_tokens :],
    }


def convert_deit(state: StateDict, init_grid: Grid) -> Tuple[StateDict, List[str]]:
    """
    Convert a DeiT/timm ViT ImageNet state dict (the DeiT release's ``{"model": ...}`` content or a
    plain timm state dict).

    The patch position embedding is resized from the pre-training grid to ``init_grid``. For
    distilled DeiT (``dist_token``; position embeddings of [CLS], distillation token, patches) the
    first entry is dropped as the original YOLOS does, so the distillation token's position
    embedding becomes the [CLS] one. The ``[DET]`` tokens, their position embeddings, mid-layer
    position embeddings and heads are new: they are left to the model's initialisation.
    """
    pos_embed = state["pos_embed"]
    num_prefix = 2 if "dist_token" in state else 1
    source_grid = square_grid(pos_embed.shape[1] - num_prefix)
    patch_pos = resize_patch_pos_embed(pos_embed[:, num_prefix:], source_grid, init_grid)
    out = {BACKBONE + k: v for k, v in state.items() if _VIT_KEY.match(k)}
    out[BACKBONE + "pos_embed"] = torch.cat([pos_embed[:, num_prefix - 1 : num_prefix], patch_pos], dim=1)
    logger.info(
        "DeiT/ViT: position embedding resized from a %dx%d to a %dx%d patch grid%s.",
        *source_grid, *init_grid, " (distilled: [CLS] takes the distillation token's)" if num_prefix == 2 else "",
    )
    dropped = sorted(k for k in state if not _VIT_KEY.match(k) and k != "pos_embed")
    return out, dropped


def convert_original_yolos(state: StateDict, keep_class_ids: bool = False) -> Tuple[StateDict, List[str]]:
    """Convert the ``"model"`` state dict saved by the original YOLOS training code."""
    state = dict(state)
    consume_prefix_in_state_dict_if_present(state, "module.")
    known = re.compile(r"^(backbone\.|class_embed\.|bbox_embed\.)")
    out = {"detector." + k: v for k, v in state.items() if known.match(k)}
    out.update(split_pos_embed(state["backbone.pos_embed"], state["backbone.det_token"].shape[1]))
    dropped = sorted(k for k in state if not known.match(k))
    return remap_coco_class_head(out, keep_class_ids), dropped


_HF_RENAMES = [
    (r"^vit\.embeddings\.cls_token$", "cls_token"),
    (r"^vit\.embeddings\.detection_tokens$", "det_token"),
    (r"^vit\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^vit\.encoder\.(interpolation\.)?mid_position_embeddings$", "mid_pos_embed"),
    (r"^vit\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^vit\.encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^vit\.encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^vit\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^vit\.encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^vit\.layernorm\.", "norm."),
]
_HF_HEADS = [(r"^class_labels_classifier\.", "detector.class_embed."), (r"^bbox_predictor\.", "detector.bbox_embed.")]
_HF_QKV = re.compile(r"^vit\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")


def convert_huggingface(state: StateDict, num_det_tokens: int, keep_class_ids: bool = False):
    """
    Convert a Hugging Face ``YolosForObjectDetection`` state dict; ``num_det_tokens`` comes from
    its config. Separate query/key/value projections are concatenated into timm's ``qkv``.
    """
    out, dropped, qkv = {}, [], {}
    for key, value in state.items():
        match = _HF_QKV.match(key)
        if match:
            qkv[(int(match[1]), match[3], match[2])] = value
            continue
        for pattern, repl in _HF_RENAMES:
            if re.match(pattern, key):
                out[BACKBONE + re.sub(pattern, repl, key)] = value
                break
        else:
            for pattern, repl in _HF_HEADS:
                if re.match(pattern, key):
                    out[re.sub(pattern, repl, key)] = value
                    break
            else:
                if key != "vit.embeddings.position_embeddings":
                    dropped.append(key)
    for layer, kind in sorted({(layer, kind) for layer, kind, _ in qkv}):
        parts = [qkv[(layer, kind, name)] for name in ("query", "key", "value")]
        out[f"{BACKBONE}blocks.{layer}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    out.update(split_pos_embed(state["vit.embeddings.position_embeddings"], num_det_tokens))
    return remap_coco_class_head(out, keep_class_ids), sorted(dropped)


def load_huggingface_folder(folder: str) -> Tuple[StateDict, dict]:
    """Read the weights and ``config.json`` of a folder written by ``save_pretrained``."""
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{folder!r} is not a Hugging Face model folder: it has no config.json")
    with open(config_path) as f:
        config = json.load(f)
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return load_weights_file(path), config
    raise FileNotFoundError(f"{folder!r} holds neither model.safetensors nor pytorch_model.bin")


def convert_file(
    src: str, fmt: str, init_grid: Optional[Grid] = None, keep_class_ids: bool = False
) -> Tuple[StateDict, List[str]]:
    """
    Read ``src`` in format ``fmt`` ("deit", "yolos" or "hf") and convert it.

    Args:
        src: a checkpoint file, or for "hf" the folder written by ``save_pretrained``.
        init_grid: patch grid of the target model's ``init_pe_size``; required for "deit".
        keep_class_ids: keep a 92-output COCO class head as it is (see :func:`remap_coco_class_head`).
    """
    if fmt == "hf":
        state, config = load_huggingface_folder(src)
        logger.info(
            "Hugging Face config: hidden_size %s, num_hidden_layers %s, image_size %s, "
            "use_mid_position_embeddings %s, layer_norm_eps %s.",
            *(config.get(k) for k in ("hidden_size", "num_hidden_layers", "image_size",
                                      "use_mid_position_embeddings", "layer_norm_eps")),
        )
        return convert_huggingface(state, config.get("num_detection_tokens", 100), keep_class_ids)
    state = state_dict_of(load_weights_file(src), src)
    if fmt == "deit":
        if init_grid is None:
            raise ValueError("Converting DeiT weights needs the target init_pe_size (give --config-file)")
        _require_keys(src, state, ["pos_embed", "cls_token", "patch_embed.proj.weight"], "a DeiT/ViT")
        return convert_deit(state, init_grid)
    if fmt == "yolos":
        _require_keys(src, state, ["backbone.pos_embed", "backbone.det_token", "class_embed.layers.0.weight"], "an original YOLOS")
        return convert_original_yolos(state, keep_class_ids)
    raise ValueError(f"Unknown checkpoint format {fmt!r}; expected one of 'deit', 'yolos', 'hf'")


def _require_keys(src: str, state: StateDict, keys: List[str], what: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise KeyError(f"{src!r} is not {what} checkpoint: it has no {', '.join(missing)}")
