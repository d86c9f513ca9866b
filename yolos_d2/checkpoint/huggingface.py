"""
Hugging Face transformers' ``YolosForObjectDetection``: folders written by ``save_pretrained``
(``config.json`` and the weights), read (:func:`convert_huggingface_folder`) and written
(:func:`save_huggingface`, with the ``preprocessor_config.json`` of the config's test-time
preprocessing for transformers' ``pipeline("object-detection")``).
"""
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..data import EvalResize
from ..modeling.position_embedding import Grid
from .class_head import remap_coco_class_head
from .io import load_weights_file
from .key_maps import (
    BACKBONE,
    MID_POS_EMBED,
    POS_EMBED,
    QKV_PARTS,
    Converted,
    KeyMap,
    KeyTemplate,
    StateDict,
    join_pos_embed,
    rename_all,
    split_pos_embed,
    without_pos_embeds,
)

__all__ = [
    "convert_huggingface",
    "convert_huggingface_folder",
    "huggingface_config",
    "huggingface_grids",
    "huggingface_image_processor",
    "load_huggingface_folder",
    "save_huggingface",
    "save_huggingface_folder",
    "to_huggingface",
]

logger = logging.getLogger(__name__)

_HF_KEYS = KeyMap(
    [
        ("vit.embeddings.cls_token", BACKBONE + "cls_token"),
        ("vit.embeddings.detection_tokens", BACKBONE + "det_token"),
        ("vit.embeddings.patch_embeddings.projection.", BACKBONE + "patch_embed.proj."),
        ("vit.encoder.interpolation.mid_position_embeddings", MID_POS_EMBED),
        ("vit.encoder.layer.{}.layernorm_before.", BACKBONE + "blocks.{}.norm1."),
        ("vit.encoder.layer.{}.attention.output.dense.", BACKBONE + "blocks.{}.attn.proj."),
        ("vit.encoder.layer.{}.layernorm_after.", BACKBONE + "blocks.{}.norm2."),
        ("vit.encoder.layer.{}.intermediate.dense.", BACKBONE + "blocks.{}.mlp.fc1."),
        ("vit.encoder.layer.{}.output.dense.", BACKBONE + "blocks.{}.mlp.fc2."),
        ("vit.layernorm.", BACKBONE + "norm."),
        ("class_labels_classifier.", "detector.class_embed."),
        ("bbox_predictor.", "detector.bbox_embed."),
    ]
)
# Names older transformers versions saved (the hub's pytorch_model.bin files).
_HF_OLD_NAMES = {"vit.encoder.mid_position_embeddings": "vit.encoder.interpolation.mid_position_embeddings"}
# [CLS], patch and [DET] position embeddings, in one tensor.
_HF_POS_EMBED = "vit.embeddings.position_embeddings"
# transformers projects query, key and value separately; yolos_d2 (as timm) in one layer.
_HF_QKV = KeyTemplate("vit.encoder.layer.{}.attention.attention.{}.{}")  # block, part, weight|bias
_OUR_QKV = KeyTemplate(BACKBONE + "blocks.{}.attn.qkv.{}")  # block, weight|bias
# Defaults of transformers' YolosConfig, for a config.json that leaves them out.
_HF_DEFAULTS = {"image_size": [512, 864], "patch_size": 16, "num_detection_tokens": 100}
# transformers' YolosImageProcessor floors the resized sides to multiples of this many pixels.
_HF_SIZE_MULTIPLE = 16
# The config.json entries logged when a folder is converted.
_LOGGED_CONFIG = ("hidden_size", "num_hidden_layers", "image_size", "use_mid_position_embeddings", "layer_norm_eps")


def convert_huggingface_folder(folder: str, keep_class_ids: bool = False) -> Converted:
    """
    Convert the ``save_pretrained`` folder ``folder``: its weights by :func:`convert_huggingface`,
    their grids and LayerNorm epsilon from its config.json.
    """
    state, config = load_huggingface_folder(folder)
    logger.info("Hugging Face config: %s.", ", ".join(f"{k} {config.get(k)}" for k in _LOGGED_CONFIG))
    num_det_tokens = config.get("num_detection_tokens", _HF_DEFAULTS["num_detection_tokens"])
    state, dropped = convert_huggingface(state, num_det_tokens, keep_class_ids)
    return Converted(state, dropped, huggingface_grids(config), layer_norm_eps=config.get("layer_norm_eps"))


def convert_huggingface(
    state: StateDict, num_det_tokens: int, keep_class_ids: bool = False
) -> Tuple[StateDict, List[str]]:
    """
    Convert a Hugging Face ``YolosForObjectDetection`` state dict; ``num_det_tokens`` comes from
    its config. Separate query/key/value projections are concatenated into timm's ``qkv``. A
    92-output COCO class head becomes detectron2's 81 outputs unless ``keep_class_ids``
    (:func:`~yolos_d2.checkpoint.class_head.remap_coco_class_head`). Returns the state dict and
    the keys left out.
    """
    state = {_HF_OLD_NAMES.get(k, k): v for k, v in state.items()}
    out, qkv, dropped = {}, {}, []
    for key, value in state.items():
        parts = _HF_QKV.match(key)
        ours = _HF_KEYS.to_ours(key)
        if parts is not None and parts[1] in QKV_PARTS:
            block, part, kind = parts
            qkv.setdefault((block, kind), {})[part] = value
        elif ours is not None:
            out[ours] = value
        elif key != _HF_POS_EMBED:
            dropped.append(key)
    for (block, kind), parts in qkv.items():
        out[_OUR_QKV.fill([block, kind])] = torch.cat([parts[name] for name in QKV_PARTS], dim=0)
    out.update(split_pos_embed(state[_HF_POS_EMBED], num_det_tokens))
    return remap_coco_class_head(out, keep_class_ids), sorted(dropped)


def to_huggingface(state: StateDict) -> StateDict:
    """The inverse of :func:`convert_huggingface` (without the class-head remapping)."""
    out, renamed = {}, {}
    for key, value in without_pos_embeds(state).items():
        parts = _OUR_QKV.match(key)
        if parts is None:
            renamed[key] = value
            continue
        block, kind = parts
        # Copies: safetensors refuses tensors that share memory.
        for part, chunk in zip(QKV_PARTS, value.chunk(len(QKV_PARTS))):
            out[_HF_QKV.fill([block, part, kind])] = chunk.clone()
    out.update(rename_all(renamed, _HF_KEYS.to_theirs, "transformers' YOLOS"))
    out[_HF_POS_EMBED] = join_pos_embed(state)
    return out


def huggingface_grids(config: Dict[str, Any]) -> Dict[str, Grid]:
    """
    The patch grids of a Hugging Face YOLOS's position embeddings, from its config.json: both are
    defined on the grid of ``image_size`` (an int for a square, or [H, W] pixels).
    """
    size = config.get("image_size", _HF_DEFAULTS["image_size"])
    height, width = (size, size) if isinstance(size, int) else size
    patch_size = config.get("patch_size", _HF_DEFAULTS["patch_size"])
    grid = (height // patch_size, width // patch_size)
    return {POS_EMBED: grid, MID_POS_EMBED: grid}


def huggingface_config(backbone_cfg, class_names: Optional[Sequence[str]] = None):
    """
    The transformers ``YolosConfig`` of the model a ``ViTWithDetTokens`` config describes (the
    LazyConfig node ``model.detector.backbone``): its ``image_size`` is ``init_pe_size``, and
    transformers has one image size for both position embeddings, so ``mid_pe_size`` must be
    None or equal ``init_pe_size``. Its labels are ``class_names`` (``id2label``, ``label2id``);
    without them, COCO's 91 category ids, as the hub's YOLOS models have.
    """
    from transformers import YolosConfig

    if backbone_cfg.mid_pe_size is not None and tuple(backbone_cfg.mid_pe_size) != tuple(backbone_cfg.init_pe_size):
        raise ValueError(
            f"transformers' YOLOS needs mid_pe_size == init_pe_size, got {backbone_cfg.mid_pe_size} "
            f"and {backbone_cfg.init_pe_size}"
        )
    if class_names is None:
        labels = {"num_labels": 91}  # COCO's category ids 0-90
    else:
        labels = {
            "id2label": dict(enumerate(class_names)),
            "label2id": {name: i for i, name in enumerate(class_names)},
        }
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
        **labels,
    )


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


def huggingface_image_processor(cfg):
    """
    transformers' ``YolosImageProcessor`` that preprocesses images as the LazyConfig ``cfg`` does
    at test time: the resize of ``dataloader.test.mapper.augmentations`` (shorter side to its
    length, longer side at most its ``max_size``, sides floored to multiples of 16 pixels; none:
    no resize) with a bilinear filter, then ``(pixels / 255 - pixel_mean / 255) / (pixel_std / 255)``,
    ``cfg.model``'s normalisation in [0, 1] units. Its resize differs slightly from yolos_d2's in
    its filter and where the longer side is capped: see docs/weights.md.

    Raises:
        ValueError for a preprocessing transformers cannot reproduce: BGR input (its pipelines
        give RGB images), no cap on the longer side or sides floored to multiples other than 16.
    """
    from transformers import YolosImageProcessor

    if cfg.model.input_format != "RGB":
        raise ValueError(
            f"model.input_format is {cfg.model.input_format!r}: transformers' image processors give models RGB images"
        )
    resize = EvalResize.from_config(cfg).detr_resize
    if resize is not None and (resize.size_multiple != _HF_SIZE_MULTIPLE or resize.max_size is None):
        raise ValueError(
            "transformers' YolosImageProcessor caps the longer side and floors the sides to multiples of "
            f"{_HF_SIZE_MULTIPLE} pixels; dataloader.test.mapper.augmentations has max_size={resize.max_size} and "
            f"size_multiple={resize.size_multiple}"
        )
    size = None if resize is None else {"shortest_edge": resize.short_edge_length[0], "longest_edge": resize.max_size}
    return YolosImageProcessor(
        do_resize=resize is not None,
        size=size,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[value / 255 for value in cfg.model.pixel_mean],
        image_std=[value / 255 for value in cfg.model.pixel_std],
    )


def save_huggingface_folder(state: StateDict, config, folder: str) -> None:
    """
    Write ``state`` (transformers' names, see :func:`to_huggingface`) and ``config`` (a
    ``YolosConfig``) as ``save_pretrained`` does: ``config.json`` and ``model.safetensors``.
    Raises if ``state`` does not hold exactly the tensors of that ``YolosForObjectDetection``.
    """
    from transformers import YolosForObjectDetection

    with torch.device("meta"):  # no memory, no initialisation: every tensor comes from state
        model = YolosForObjectDetection(config)
    model.load_state_dict(state, strict=True, assign=True)
    model.save_pretrained(folder)


def save_huggingface(state: StateDict, cfg, class_names: Sequence[str], folder: str) -> None:
    """
    Write a yolos_d2 state dict of the LazyConfig ``cfg``'s model as a ``save_pretrained`` folder
    of transformers' ``YolosForObjectDetection``: the config of ``cfg.model.detector.backbone``
    labelled with ``class_names``, the weights, and the ``preprocessor_config.json`` of
    :func:`huggingface_image_processor`. Raises ValueError, before writing anything, for a model
    or a preprocessing transformers cannot reproduce.
    """
    config = huggingface_config(cfg.model.detector.backbone, class_names)
    image_processor = huggingface_image_processor(cfg)
    save_huggingface_folder(to_huggingface(state), config, folder)
    image_processor.save_pretrained(folder)
