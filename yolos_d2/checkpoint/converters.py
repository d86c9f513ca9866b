"""
Conversion between yolos_d2's parameter names and the original YOLOS code's and Hugging Face
``YolosForObjectDetection``'s, in both directions.

Each layout is a :class:`KeyMap` of name templates, read one way to convert in and the other way
to convert out; what is not a renaming (the ``[CLS]``, patch and ``[DET]`` position embeddings in
one tensor, transformers' separate query/key/value projections, COCO's class ids) is a pair of
functions, one the inverse of the other. yolos_d2's names are those of a :class:`yolos_d2.modeling.YOLOS`
state dict (keys under ``detector.``).
"""
import argparse
import dataclasses
import json
import logging
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from ..modeling.position_embedding import Grid
from .io import load_weights_file

logger = logging.getLogger(__name__)

StateDict = Dict[str, torch.Tensor]
BACKBONE = "detector.backbone."
POS_EMBED = BACKBONE + "pos_embed"
DET_POS_EMBED = BACKBONE + "det_pos_embed"
MID_POS_EMBED = BACKBONE + "mid_pos_embed"


@dataclasses.dataclass
class Converted:
    """A checkpoint converted to yolos_d2's names."""

    state: StateDict
    # Keys of the source that the model has no use for (heads of other tasks, optimizer state, ...).
    dropped: List[str]
    # Patch grid (rows, cols) of each position embedding in ``state``, where the source says.
    grids: Dict[str, Grid]
    # The model's tensors or modules the source format does not have: they are written under
    # "new_keys", and YOLOSCheckpointer leaves them to the model's initialisation.
    new_keys: List[str] = dataclasses.field(default_factory=list)
    # The source's LayerNorm epsilon, where it says (a Hugging Face config.json).
    layer_norm_eps: Optional[float] = None


class _Template:
    """A key name in which "{}" stands for one name part (e.g. a block index); ending in "." it names a prefix."""

    def __init__(self, text: str):
        self.text = text
        self.is_prefix = text.endswith(".")
        pattern = re.escape(text).replace(r"\{\}", r"(\w+)")
        self.regex = re.compile(f"^{pattern}{'(.+)' if self.is_prefix else ''}$")

    def match(self, key: str) -> Optional[List[str]]:
        """The name parts of ``key`` (then, for a prefix, the rest of the key), or None if it does not match."""
        match = self.regex.match(key)
        return list(match.groups()) if match else None

    def fill(self, parts: Sequence[str]) -> str:
        """The key of these name parts, as :meth:`match` returns them."""
        if self.is_prefix:
            *parts, rest = parts
            return self.text.format(*parts) + rest
        return self.text.format(*parts)


class KeyMap:
    """
    A one-to-one renaming between the keys of another layout ("theirs") and yolos_d2's ("ours"),
    given as (theirs, ours) pairs of name templates: a template ending in "." renames every key
    under that prefix, another one key; "{}" stands for a name part such as a block index.
    """

    def __init__(self, pairs: Sequence[Tuple[str, str]]):
        self._pairs = [(_Template(theirs), _Template(ours)) for theirs, ours in pairs]
        for theirs, ours in self._pairs:
            if theirs.is_prefix != ours.is_prefix:
                raise ValueError(f"{theirs.text!r} and {ours.text!r}: a prefix can only be renamed to a prefix")

    def to_ours(self, key: str) -> Optional[str]:
        """Our name of their ``key``, or None if no template matches it."""
        return self._rename(key, 0)

    def to_theirs(self, key: str) -> Optional[str]:
        """Their name of our ``key``, or None if no template matches it."""
        return self._rename(key, 1)

    def _rename(self, key: str, side: int) -> Optional[str]:
        for pair in self._pairs:
            parts = pair[side].match(key)
            if parts is not None:
                return pair[1 - side].fill(parts)
        return None


def _rename_all(state: StateDict, rename: Callable[[str], Optional[str]], layout: str) -> StateDict:
    """``state`` with each key renamed by ``rename``; raises ``KeyError`` naming keys it has no name for."""
    renamed = {key: rename(key) for key in state}
    unnamed = sorted(key for key, name in renamed.items() if name is None)
    if unnamed:
        raise KeyError(f"No name in {layout} for {', '.join(unnamed)}")
    return {renamed[key]: value for key, value in state.items()}


def require_keys(source: str, state: StateDict, keys: Sequence[str], what: str) -> None:
    """Raise ``KeyError`` naming ``source`` and ``what`` it should be if ``state`` lacks any of ``keys``."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise KeyError(f"{source!r} is not {what} checkpoint: it has no {', '.join(missing)}")


# ---------------------------------------------------------------------------------------------
# What both layouts share: the class head's COCO ids and the position embeddings in one tensor.

# Bias given to the logits of COCO's 11 unused category ids when a head is widened to 92 outputs:
# exp(-1e4) is 0 in float32 and float16, so these classes take no probability from the softmax.
_UNUSED_CLASS_BIAS = -1e4
_COCO_ID_OUTPUTS = 92  # COCO's category ids 0-90 and no-object


def _coco_thing_categories() -> List[dict]:
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    return [c for c in COCO_CATEGORIES if c["isthing"]]


def coco_class_names() -> List[str]:
    """COCO's 80 thing classes in detectron2's order (the ``thing_classes`` of its COCO datasets)."""
    return [c["name"] for c in _coco_thing_categories()]


def coco_class_head_rows() -> List[int]:
    """
    Rows to keep from a class head over COCO's 91 category ids + no-object (92 outputs, as in the
    original YOLOS and Hugging Face checkpoints) to get detectron2's 80 contiguous classes +
    no-object, in detectron2's order.
    """
    return [c["id"] for c in _coco_thing_categories()] + [91]


def _class_output_layer(state: StateDict) -> Tuple[str, str]:
    """The weight and bias keys of the class head's last layer in a yolos_d2 state dict."""
    last = max(int(k.split(".")[3]) for k in state if k.startswith("detector.class_embed.layers."))
    return f"detector.class_embed.layers.{last}.weight", f"detector.class_embed.layers.{last}.bias"


def remap_coco_class_head(state: StateDict, keep_class_ids: bool = False) -> StateDict:
    """Turn a 92-output COCO class head into an 81-output one, unless ``keep_class_ids``."""
    weight, bias = _class_output_layer(state)
    if keep_class_ids or state[weight].shape[0] != _COCO_ID_OUTPUTS:
        return state
    rows = torch.tensor(coco_class_head_rows())
    logger.info("Class head: kept the rows of COCO's 80 thing classes and no-object (92 -> 81 outputs).")
    return {**state, weight: state[weight][rows], bias: state[bias][rows]}


def expand_coco_class_head(state: StateDict) -> StateDict:
    """
    The inverse of :func:`remap_coco_class_head`: an 81-output head (COCO's 80 classes in
    detectron2's order, then no-object) to 92 outputs indexed by COCO category id, as the
    original YOLOS code predicts them. The 11 unused ids get zero weights and a bias of -1e4.
    """
    weight_key, bias_key = _class_output_layer(state)
    weight, bias = state[weight_key], state[bias_key]
    rows = torch.tensor(coco_class_head_rows())
    if weight.shape[0] != len(rows):
        raise ValueError(f"a COCO class head has {len(rows)} outputs, this one {weight.shape[0]}")
    wide_weight = weight.new_zeros(_COCO_ID_OUTPUTS, weight.shape[1])
    wide_bias = bias.new_full((_COCO_ID_OUTPUTS,), _UNUSED_CLASS_BIAS)
    wide_weight[rows], wide_bias[rows] = weight, bias
    logger.info("Class head: COCO's 80 classes placed at their category ids (81 -> 92 outputs).")
    return {**state, weight_key: wide_weight, bias_key: wide_bias}


def split_pos_embed(pos_embed: torch.Tensor, num_det_tokens: int) -> StateDict:
    """
    (1, 1 + G + K, D) position embeddings of [CLS], patches, [DET] -> the backbone's ``pos_embed``
    (1, 1 + G, D) and ``det_pos_embed`` (1, K, D).
    """
    num_tokens = pos_embed.shape[1]
    return {
        POS_EMBED: pos_embed[:, : num_tokens - num_det_tokens],
        DET_POS_EMBED: pos_embed[:, num_tokens - num_det_tokens :],
    }


def join_pos_embed(state: StateDict) -> torch.Tensor:
    """The inverse of :func:`split_pos_embed`: (1, 1 + G + K, D) from a yolos_d2 state dict."""
    return torch.cat([state[POS_EMBED], state[DET_POS_EMBED]], dim=1)


def _without_pos_embeds(state: StateDict) -> StateDict:
    return {k: v for k, v in state.items() if k not in (POS_EMBED, DET_POS_EMBED)}


# ---------------------------------------------------------------------------------------------
# The original YOLOS code (github.com/hustvl/YOLOS): its Detector's state dict, saved by its
# main.py as {"model", "optimizer", "lr_scheduler", "epoch", "args"}.

_ORIGINAL_KEYS = KeyMap(
    [("backbone.", BACKBONE), ("class_embed.", "detector.class_embed."), ("bbox_embed.", "detector.bbox_embed.")]
)
# [CLS], patch and [DET] position embeddings, in one tensor.
_ORIGINAL_POS_EMBED = "backbone.pos_embed"
_ORIGINAL_PE_SIZES = {POS_EMBED: "init_pe_size", MID_POS_EMBED: "mid_pe_size"}


def convert_original_yolos(state: StateDict, keep_class_ids: bool = False) -> Tuple[StateDict, List[str]]:
    """
    Convert the ``"model"`` state dict saved by the original YOLOS training code; returns it and
    the keys left out.
    """
    state = dict(state)
    consume_prefix_in_state_dict_if_present(state, "module.")
    out, dropped = {}, []
    for key, value in state.items():
        ours = _ORIGINAL_KEYS.to_ours(key)
        if ours is None:
            dropped.append(key)
        elif key != _ORIGINAL_POS_EMBED:
            out[ours] = value
    out.update(split_pos_embed(state[_ORIGINAL_POS_EMBED], state["backbone.det_token"].shape[1]))
    return remap_coco_class_head(out, keep_class_ids), sorted(dropped)


def to_original_yolos(state: StateDict) -> StateDict:
    """The inverse of :func:`convert_original_yolos` (without the class-head remapping)."""
    out = _rename_all(_without_pos_embeds(state), _ORIGINAL_KEYS.to_theirs, "the original YOLOS")
    out[_ORIGINAL_POS_EMBED] = join_pos_embed(state)
    return out


def original_grids(args: Any, patch_size: int) -> Dict[str, Grid]:
    """
    The patch grids of an original checkpoint's position embeddings, from the ``args`` its
    main.py saved (``init_pe_size``, ``mid_pe_size`` in pixels, floored to whole patches as the
    original does); none for a size it does not give.
    """
    grids = {}
    for key, name in _ORIGINAL_PE_SIZES.items():
        size = getattr(args, name, None)
        if size is not None:
            grids[key] = (size[0] // patch_size, size[1] // patch_size)
    return grids


def original_args(grids: Dict[str, Grid], patch_size: int, num_det_tokens: int) -> argparse.Namespace:
    """The inverse of :func:`original_grids`: the original's ``args`` naming the sizes of ``grids``."""
    sizes = {name: None for name in _ORIGINAL_PE_SIZES.values()}
    for key, grid in grids.items():
        sizes[_ORIGINAL_PE_SIZES[key]] = [n * patch_size for n in grid]
    return argparse.Namespace(**sizes, det_token_num=num_det_tokens)


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers' YolosForObjectDetection (a folder written by save_pretrained).

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
QKV_PARTS = ("query", "key", "value")
_HF_QKV = _Template("vit.encoder.layer.{}.attention.attention.{}.{}")  # block, part, weight|bias
_OUR_QKV = _Template(BACKBONE + "blocks.{}.attn.qkv.{}")  # block, weight|bias
# Defaults of transformers' YolosConfig, for a config.json that leaves them out.
HF_DEFAULTS = {"image_size": [512, 864], "patch_size": 16, "num_detection_tokens": 100}


def convert_huggingface(
    state: StateDict, num_det_tokens: int, keep_class_ids: bool = False
) -> Tuple[StateDict, List[str]]:
    """
    Convert a Hugging Face ``YolosForObjectDetection`` state dict; ``num_det_tokens`` comes from
    its config. Separate query/key/value projections are concatenated into timm's ``qkv``.
    Returns the state dict and the keys left out.
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
    for key, value in _without_pos_embeds(state).items():
        parts = _OUR_QKV.match(key)
        if parts is None:
            renamed[key] = value
            continue
        block, kind = parts
        # Copies: safetensors refuses tensors that share memory.
        for part, chunk in zip(QKV_PARTS, value.chunk(len(QKV_PARTS))):
            out[_HF_QKV.fill([block, part, kind])] = chunk.clone()
    out.update(_rename_all(renamed, _HF_KEYS.to_theirs, "transformers' YOLOS"))
    out[_HF_POS_EMBED] = join_pos_embed(state)
    return out


def huggingface_grids(config: Dict[str, Any]) -> Dict[str, Grid]:
    """
    The patch grids of a Hugging Face YOLOS's position embeddings, from its config.json: both are
    defined on the grid of ``image_size`` (an int for a square, or [H, W] pixels).
    """
    size = config.get("image_size", HF_DEFAULTS["image_size"])
    height, width = (size, size) if isinstance(size, int) else size
    patch_size = config.get("patch_size", HF_DEFAULTS["patch_size"])
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

