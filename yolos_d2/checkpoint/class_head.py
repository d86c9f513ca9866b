"""
COCO's class ids in a class head: the original YOLOS and transformers' checkpoints predict COCO's
91 category ids and no-object (92 outputs), detectron2 its 80 contiguous classes and no-object
(81 outputs).
"""
import logging
from typing import List, Tuple

import torch

from .key_maps import StateDict

__all__ = ["coco_class_head_rows", "coco_class_names", "expand_coco_class_head", "remap_coco_class_head"]

logger = logging.getLogger(__name__)

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
