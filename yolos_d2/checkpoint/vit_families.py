"""
ViT releases (supervised or self-supervised ImageNet pre-training) as YOLOS backbone initialisations.

A family's release file is read into timm's ViT names (``cls_token``, ``pos_embed``,
``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``),
then :func:`convert_vit` puts them on the backbone: the patch position embedding is resized to
the target ``init_pe_size``, and the ``[DET]`` tokens, their position embeddings, the mid-layer
position embeddings and the heads are left to the model's initialisation. A release holding
parts YOLOS's blocks do not have (layer scale, except DeiT III's, register tokens, relative
position bias, anything else not named here) is refused, naming them.
"""
import dataclasses
import logging
import math
import re
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..modeling.position_embedding import Grid, resize_patch_pos_embed, square_grid
from .io import state_dict_of
from .key_maps import (
    BACKBONE,
    MID_POS_EMBED,
    POS_EMBED,
    QKV_PARTS,
    Converted,
    KeyMap,
    StateDict,
    require_keys,
)

__all__ = ["FAMILIES", "NEW_KEYS", "ViTFamily", "convert_vit", "convert_vit_release", "fold_layer_scale"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ViTFamily:
    """Where a family's release files keep a ViT of timm's block structure."""

    name: str
    # The file's entry holding the state dict; None: its "model" entry if that is a dict, else the file.
    container: Optional[str] = None
    # Prefix of the ViT's keys in the state dict; keys without it are left out.
    prefix: str = ""
    # DeiT III's layer scale is multiplied into the layers it scales (see fold_layer_scale).
    fold_layer_scale: bool = False


# By yolos-convert's --format name. A file in vit_jax's names (AugReg's .npz) is renamed first.
FAMILIES = {
    "deit": ViTFamily("DeiT"),
    "deit3": ViTFamily("DeiT III", fold_layer_scale=True),
    "augreg": ViTFamily("AugReg ViT"),
    "mae": ViTFamily("MAE"),
    "mocov3": ViTFamily("MoCo v3", container="state_dict", prefix="module.base_encoder."),
    "dino": ViTFamily("DINO"),
}

# The backbone's tensors (or modules) a ViT release does not have.
NEW_KEYS = [
    BACKBONE + "det_token",
    BACKBONE + "det_pos_embed",
    MID_POS_EMBED,
    "detector.class_embed",
    "detector.bbox_embed",
]
# timm's names of the ViT tensors YOLOS uses (pos_embed apart: it is resized).
_VIT_KEY = re.compile(
    r"^(cls_token|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)"
    r"|blocks\.\d+\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias))$"
)
# Parts of a release that detection has no use for: classification heads, the distillation
# token, pre-training's mask token and decoder (MAE).
_LEFT_OUT = re.compile(r"^(head|head_dist|fc_norm|pre_logits|dist_token|mask_token|decoder_\w+)(\.|$)")
# Layer scale: gamma_1 (DeiT III's name) or ls1.gamma (timm's) scales the attention's output,
# gamma_2 or ls2.gamma the MLP's; groups: block, 1 or 2.
_LAYER_SCALE = re.compile(r"^blocks\.(\d+)\.(?:gamma_([12])|ls([12])\.gamma)$")
_SCALED_LAYER = {"1": "attn.proj", "2": "mlp.fc2"}
# Parts some ViTs have and YOLOS's backbone does not.
_MISSING_PARTS = [
    ("layer scale", _LAYER_SCALE),
    ("register tokens", re.compile(r"^(reg_token|register_tokens)$")),
    ("relative position bias", re.compile(r"(^|\.)(relative_position_bias_table|relative_position_index)$")),
]


def _weight_and_bias(jax: str, timm: str, weight: str) -> List[Tuple[str, str]]:
    return [(f"{jax}/{weight}", f"{timm}.weight"), (f"{jax}/bias", f"{timm}.bias")]


# vit_jax's names (Google's .npz releases, e.g. AugReg's) -> timm's, as timm's _load_weights reads them.
_JAX_BLOCK = "Transformer/encoderblock_{}/"
_JAX_KEYS = KeyMap(
    [
        ("cls", "cls_token"),
        ("Transformer/posembed_input/pos_embedding", "pos_embed"),
        *_weight_and_bias("embedding", "patch_embed.proj", "kernel"),
        *_weight_and_bias(_JAX_BLOCK + "LayerNorm_0", "blocks.{}.norm1", "scale"),
        *_weight_and_bias(_JAX_BLOCK + "MultiHeadDotProductAttention_1/out", "blocks.{}.attn.proj", "kernel"),
        *_weight_and_bias(_JAX_BLOCK + "LayerNorm_2", "blocks.{}.norm2", "scale"),
        *_weight_and_bias(_JAX_BLOCK + "MlpBlock_3/Dense_0", "blocks.{}.mlp.fc1", "kernel"),
        *_weight_and_bias(_JAX_BLOCK + "MlpBlock_3/Dense_1", "blocks.{}.mlp.fc2", "kernel"),
        *_weight_and_bias("Transformer/encoder_norm", "norm", "scale"),
        *_weight_and_bias("head", "head", "kernel"),
        *_weight_and_bias("pre_logits", "pre_logits.fc", "kernel"),
    ]
)
_JAX_QKV = re.compile(
    r"^Transformer/encoderblock_(\d+)/MultiHeadDotProductAttention_1/(query|key|value)/(kernel|bias)$"
)


def convert_vit_release(checkpoint: Dict[str, Any], path: str, family: ViTFamily, init_grid: Grid) -> Converted:
    """
    Convert a release file of ``family`` (as :func:`~yolos_d2.checkpoint.load_weights_file`
    reads ``path``) for a backbone whose ``init_pe_size`` has the patch grid ``init_grid``.
    """
    state, dropped = _timm_state(checkpoint, path, family)
    converted = convert_vit(state, init_grid, path, family.fold_layer_scale)
    converted.dropped = sorted(dropped + converted.dropped)
    return converted


def _timm_state(checkpoint: Dict[str, Any], path: str, family: ViTFamily) -> Tuple[StateDict, List[str]]:
    """The family's ViT in timm's names, as tensors, and the keys of the file's state dict left out."""
    if family.container is not None and not isinstance(checkpoint.get(family.container), dict):
        raise KeyError(f"{path!r} is not a {family.name} checkpoint: it has no {family.container!r} entry")
    state = state_dict_of(checkpoint[family.container] if family.container else checkpoint, path)
    state = {k: torch.as_tensor(v) for k, v in state.items()}
    dropped = [k for k in state if not k.startswith(family.prefix)]
    state = {k[len(family.prefix) :]: v for k, v in state.items() if k.startswith(family.prefix)}
    if "embedding/kernel" in state:
        state = from_jax_names(state)
    require_keys(path, state, ["pos_embed", "cls_token", "patch_embed.proj.weight"], f"a {family.name}")
    return state, dropped


def from_jax_names(state: StateDict) -> StateDict:
    """
    A ViT in vit_jax's names and layouts (kernels (in, out), convolution kernels (kh, kw, in,
    out), attention kernels split by head) in timm's. Keys it does not know are kept as they are.
    """
    out, qkv = {}, {}
    for key, value in state.items():
        parts = _JAX_QKV.match(key)
        if parts is not None:
            block, part, kind = parts.groups()
            # Kernels (D, heads, head_dim) -> (heads * head_dim, D), biases (heads, head_dim) -> (heads * head_dim,).
            qkv.setdefault((block, kind), {})[part] = value.flatten(1).T if kind == "kernel" else value.flatten()
            continue
        name = _JAX_KEYS.to_ours(key)
        out[name if name is not None else key] = _jax_layout_to_torch(value) if key.endswith("/kernel") else value
    for (block, kind), parts in qkv.items():
        name = f"blocks.{block}.attn.qkv.{'weight' if kind == 'kernel' else 'bias'}"
        out[name] = torch.cat([parts[part] for part in QKV_PARTS])
    return out


def _jax_layout_to_torch(kernel: torch.Tensor) -> torch.Tensor:
    """
    A kernel (kh, kw, in, out) -> (out, in, kh, kw); (in..., out), e.g. attention's output
    projection (heads, head_dim, D), -> (out, in).
    """
    if kernel.ndim == 4:
        return kernel.permute(3, 2, 0, 1).contiguous()
    return kernel.reshape(-1, kernel.shape[-1]).T.contiguous()


def convert_vit(state: StateDict, init_grid: Grid, source: str, fold_scale: bool = False) -> Converted:
    """
    Convert a timm-named ViT state dict to the backbone's names.

    The patch position embedding is resized from the pre-training grid to ``init_grid``. The
    ``[CLS]`` entry of ``pos_embed`` is kept; for distilled DeiT (``dist_token``; position
    embeddings of [CLS], distillation token, patches) the first entry is dropped as the original
    YOLOS does, so the distillation token's becomes the [CLS] one; a ViT whose ``[CLS]`` token has
    no position embedding (DeiT III, timm's ``no_embed_class``) gets a zero one, which is the same.
    With ``fold_scale``, layer scale is folded into the layers it scales (:func:`fold_layer_scale`).

    Raises:
        ValueError naming ``source`` and the keys if the ViT has parts the backbone does not.
    """
    _refuse_missing_parts(state, source, fold_scale)
    if fold_scale and any(map(_LAYER_SCALE.match, state)):
        state = fold_layer_scale(state)
    unknown = sorted(k for k in state if not (_VIT_KEY.match(k) or _LEFT_OUT.match(k) or k == "pos_embed"))
    if unknown:
        raise ValueError(f"{source!r} holds tensors of no part of a ViT that yolos_d2 knows: {_some(unknown)}")

    pos_embed = state["pos_embed"]
    num_prefix = _num_prefix_embeddings(state)
    source_grid = square_grid(pos_embed.shape[1] - num_prefix)
    patch_pos = resize_patch_pos_embed(pos_embed[:, num_prefix:], source_grid, init_grid)
    cls_pos = pos_embed[:, num_prefix - 1 : num_prefix] if num_prefix else pos_embed.new_zeros(1, 1, pos_embed.shape[2])
    out = {BACKBONE + k: v for k, v in state.items() if _VIT_KEY.match(k)}
    out[POS_EMBED] = torch.cat([cls_pos, patch_pos], dim=1)
    cls_note = {0: " ([CLS] had none: zero)", 1: "", 2: " (distilled: [CLS] takes the distillation token's)"}
    logger.info(
        "ViT: position embedding resized from a %dx%d to a %dx%d patch grid%s.",
        *source_grid, *init_grid, cls_note[num_prefix],
    )
    dropped = sorted(k for k in state if _LEFT_OUT.match(k))
    return Converted(out, dropped, grids={POS_EMBED: tuple(init_grid)}, new_keys=list(NEW_KEYS))


def _num_prefix_embeddings(state: StateDict) -> int:
    """How many entries of ``pos_embed`` precede the patches': [CLS] and the distillation token, [CLS], or none."""
    if "dist_token" in state:
        return 2
    num_tokens = state["pos_embed"].shape[1]
    return 0 if math.isqrt(num_tokens) ** 2 == num_tokens else 1


def fold_layer_scale(state: StateDict) -> StateDict:
    """
    ``state`` without layer scale, multiplied into the layer whose output it scales:
    ``gamma * (W x + b) = (gamma[:, None] * W) x + gamma * b``, for ``gamma_1``/``ls1.gamma``
    (D,) and ``attn.proj``, ``gamma_2``/``ls2.gamma`` and ``mlp.fc2``. The outputs are the same
    (to float rounding); fine-tuning then trains the products rather than the scale.
    """
    out = dict(state)
    for key in state:
        match = _LAYER_SCALE.match(key)
        if match is None:
            continue
        block, which = match[1], match[2] or match[3]
        layer = f"blocks.{block}.{_SCALED_LAYER[which]}"
        gamma = out.pop(key)
        out[f"{layer}.weight"] = gamma[:, None] * state[f"{layer}.weight"]
        out[f"{layer}.bias"] = gamma * state[f"{layer}.bias"]
    logger.info("Layer scale multiplied into each block's attn.proj and mlp.fc2.")
    return out


def _refuse_missing_parts(state: StateDict, source: str, fold_scale: bool) -> None:
    found = {
        what: sorted(k for k in state if pattern.search(k))
        for what, pattern in _MISSING_PARTS
        if not (fold_scale and pattern is _LAYER_SCALE)
    }
    found = {what: keys for what, keys in found.items() if keys}
    if not found:
        return
    hint = ""
    if "layer scale" in found:
        hint = " DeiT III's layer scale converts with --format deit3, multiplied into the layers it scales."
    raise ValueError(
        f"{source!r} holds parts that YOLOS's ViT does not have, without which its outputs would change: "
        + "; ".join(f"{what} ({_some(keys)})" for what, keys in found.items())
        + "."
        + hint
    )


def _some(names: List[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} tensors)" if len(names) > limit else "")
