"""
The checkpoint formats ``yolos-convert`` reads (:data:`FORMATS_IN`, :func:`convert_file`) and
writes (:data:`FORMATS_OUT`, :func:`save_original_yolos`, :func:`save_huggingface`).
"""
import logging
from typing import Dict, Optional, Sequence

from ..modeling.position_embedding import Grid
from .converters import (
    BACKBONE,
    HF_DEFAULTS,
    Converted,
    StateDict,
    coco_class_names,
    convert_huggingface,
    convert_original_yolos,
    expand_coco_class_head,
    huggingface_config,
    huggingface_grids,
    load_huggingface_folder,
    original_args,
    original_grids,
    require_keys,
    save_huggingface_folder,
    to_huggingface,
    to_original_yolos,
)
from .io import load_weights_file, save_checkpoint_atomic, state_dict_of
from .vit_families import FAMILIES, convert_vit_release

__all__ = ["FORMATS_IN", "FORMATS_OUT", "convert_file", "save_huggingface", "save_original_yolos"]

logger = logging.getLogger(__name__)

# "yolos": the original YOLOS code's checkpoints; "hf": transformers' save_pretrained folders;
# the others: ViT releases to initialise the backbone from (see vit_families.FAMILIES).
FORMATS_IN = ["yolos", "hf", *FAMILIES]
FORMATS_OUT = ["yolos", "hf"]


def convert_file(src: str, fmt: str, init_grid: Optional[Grid] = None, keep_class_ids: bool = False) -> Converted:
    """
    Read ``src`` in format ``fmt`` (one of :data:`FORMATS_IN`) and convert it to yolos_d2's names.

    Args:
        src: a checkpoint file, or for "hf" the folder written by ``save_pretrained``.
        init_grid: patch grid of the target model's ``init_pe_size``; required for the ViT
            families, whose position embedding is resized to it.
        keep_class_ids: keep a 92-output COCO class head as it is (see
            :func:`~yolos_d2.checkpoint.converters.remap_coco_class_head`).
    """
    if fmt == "hf":
        state, config = load_huggingface_folder(src)
        logger.info(
            "Hugging Face config: %s.",
            ", ".join(f"{k} {config.get(k)}" for k in (
                "hidden_size", "num_hidden_layers", "image_size", "use_mid_position_embeddings", "layer_norm_eps"
            )),
        )
        num_det_tokens = config.get("num_detection_tokens", HF_DEFAULTS["num_detection_tokens"])
        state, dropped = convert_huggingface(state, num_det_tokens, keep_class_ids)
        return Converted(state, dropped, huggingface_grids(config), layer_norm_eps=config.get("layer_norm_eps"))
    checkpoint = load_weights_file(src)
    if fmt == "yolos":
        state = state_dict_of(checkpoint, src)
        required = ["backbone.pos_embed", "backbone.det_token", "class_embed.layers.0.weight"]
        require_keys(src, state, required, "an original YOLOS")
        patch_size = state["backbone.patch_embed.proj.weight"].shape[-1]
        state, dropped = convert_original_yolos(state, keep_class_ids)
        return Converted(state, dropped, original_grids(checkpoint.get("args"), patch_size))
    if fmt in FAMILIES:
        if init_grid is None:
            raise ValueError(
                f"Converting {FAMILIES[fmt].name} weights needs the target init_pe_size (give --config-file)"
            )
        return convert_vit_release(checkpoint, src, FAMILIES[fmt], init_grid)
    raise ValueError(f"Unknown checkpoint format {fmt!r}; expected one of {', '.join(FORMATS_IN)}")


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


def save_huggingface(state: StateDict, backbone_cfg, class_names: Sequence[str], folder: str) -> None:
    """
    Write a yolos_d2 state dict as a ``save_pretrained`` folder of transformers'
    ``YolosForObjectDetection``: the config of ``backbone_cfg`` (the LazyConfig node
    ``model.detector.backbone``) labelled with ``class_names``, and the weights.
    """
    save_huggingface_folder(to_huggingface(state), huggingface_config(backbone_cfg, class_names), folder)
