"""
The original YOLOS code's checkpoints (github.com/hustvl/YOLOS): its Detector's state dict,
saved by its main.py as ``{"model", "optimizer", "lr_scheduler", "epoch", "args"}``, read
(:func:`convert_original_checkpoint`) and written (:func:`save_original_yolos`).
"""
import argparse
from typing import Any, Dict, List, Sequence, Tuple

from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from ..modeling.position_embedding import Grid
from .class_head import coco_class_names, expand_coco_class_head, remap_coco_class_head
from .io import save_checkpoint_atomic, state_dict_of
from .key_maps import (
    BACKBONE,
    MID_POS_EMBED,
    POS_EMBED,
    Converted,
    KeyMap,
    StateDict,
    join_pos_embed,
    rename_all,
    require_keys,
    split_pos_embed,
    without_pos_embeds,
)

__all__ = [
    "convert_original_checkpoint",
    "convert_original_yolos",
    "original_args",
    "original_grids",
    "save_original_yolos",
    "to_original_yolos",
]

_ORIGINAL_KEYS = KeyMap(
    [("backbone.", BACKBONE), ("class_embed.", "detector.class_embed."), ("bbox_embed.", "detector.bbox_embed.")]
)
# [CLS], patch and [DET] position embeddings, in one tensor.
_ORIGINAL_POS_EMBED = "backbone.pos_embed"
# The original's args naming the size (pixels) each position embedding is defined on.
_ORIGINAL_PE_SIZES = {POS_EMBED: "init_pe_size", MID_POS_EMBED: "mid_pe_size"}


def convert_original_checkpoint(checkpoint: Dict[str, Any], path: str, keep_class_ids: bool = False) -> Converted:
    """
    Convert an original checkpoint file (as :func:`~yolos_d2.checkpoint.load_weights_file` reads
    ``path``): its ``"model"`` by :func:`convert_original_yolos`, the grids from its ``"args"``.
    """
    state = state_dict_of(checkpoint, path)
    required = [_ORIGINAL_POS_EMBED, "backbone.det_token", "class_embed.layers.0.weight"]
    require_keys(path, state, required, "an original YOLOS")
    patch_size = state["backbone.patch_embed.proj.weight"].shape[-1]
    state, dropped = convert_original_yolos(state, keep_class_ids)
    return Converted(state, dropped, original_grids(checkpoint.get("args"), patch_size))


def convert_original_yolos(state: StateDict, keep_class_ids: bool = False) -> Tuple[StateDict, List[str]]:
    """
    Convert the ``"model"`` state dict saved by the original YOLOS training code; returns it and
    the keys left out. Its 92-output COCO class head becomes detectron2's 81 outputs unless
    ``keep_class_ids`` (:func:`~yolos_d2.checkpoint.class_head.remap_coco_class_head`).
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
    out = rename_all(without_pos_embeds(state), _ORIGINAL_KEYS.to_theirs, "the original YOLOS")
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


def save_original_yolos(
    state: StateDict, grids: Dict[str, Grid], path: str, class_names: Sequence[str], keep_class_ids: bool = False
) -> None:
    """
    Write a yolos_d2 state dict as the original YOLOS code saves its checkpoints, atomically:
    ``{"model": its Detector's state dict, "args": Namespace(init_pe_size, mid_pe_size,
    det_token_num)}``, the sizes (pixels) of the position embeddings' ``grids`` (state-dict key
    -> (rows, cols)). A model of COCO's 80 classes (``class_names``) gets the original's class
    head over COCO's category ids (92 outputs), unless ``keep_class_ids``.
    """
    if not keep_class_ids and list(class_names) == coco_class_names():
        state = expand_coco_class_head(state)
    patch_size = state[BACKBONE + "patch_embed.proj.weight"].shape[-1]
    args = original_args(grids, patch_size, num_det_tokens=state[BACKBONE + "det_token"].shape[1])
    save_checkpoint_atomic({"model": to_original_yolos(state), "args": args}, path)
