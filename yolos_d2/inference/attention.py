"""
Reading a ViT block's self-attention weights without changing how the model computes, and laying
the ``[DET]`` tokens' weights out on the image: an inspection aid, not a part of the model.

The blocks compute attention with fused kernels that never form the attention matrix, so
:func:`record_attention` recomputes it, only while it is active, from the output of the block's
``attn.qkv`` projection. It relies on nothing else of the attention module than ``qkv`` (a Linear
D -> 3D whose output is q, k, v, each with its heads contiguous, as in timm), ``num_heads`` and,
when present, timm's ``q_norm`` / ``k_norm``; the scale is ``head_dim ** -0.5``.
:func:`det_token_patch_attention` picks the ``[DET]`` tokens' weights on the patch grid
(:func:`padded_patch_grid`) and :func:`attention_over_image` spreads them on the image's pixels.
"""
import math
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "attention_over_image",
    "attention_weights",
    "det_token_patch_attention",
    "padded_patch_grid",
    "record_attention",
]


def attention_weights(
    qkv: torch.Tensor,
    num_heads: int,
    q_norm: Optional[nn.Module] = None,
    k_norm: Optional[nn.Module] = None,
    num_queries: Optional[int] = None,
) -> torch.Tensor:
    """
    ``softmax(q k^T * head_dim ** -0.5)`` from the output of a ``qkv`` projection.

    Args:
        qkv: (B, N, 3 * D) the projection of N tokens: q, k, v, each (num_heads, head_dim).
        num_heads: number of attention heads.
        q_norm, k_norm: per-head normalisation of q and k applied before the product, or None.
        num_queries: Q, keep the rows of the last Q tokens only; None for all N.

    Returns:
        (B, num_heads, Q, N) float32 attention weights; each row sums to 1 over the N keys.
    """
    batch, num_tokens, width = qkv.shape
    head_dim = width // 3 // num_heads
    q, k, _ = qkv.detach().float().view(batch, num_tokens, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    if num_queries is not None:
        q = q[:, :, num_tokens - num_queries :]
    if q_norm is not None:
        q = q_norm(q)
    if k_norm is not None:
        k = k_norm(k)
    return (q @ k.transpose(-2, -1) * head_dim**-0.5).softmax(dim=-1)


def _qk_norm(attn: nn.Module, name: str) -> Optional[nn.Module]:
    norm = getattr(attn, name, None)
    return None if norm is None or isinstance(norm, nn.Identity) else norm


@contextmanager
def record_attention(
    backbone: nn.Module, block_index: int = -1, num_queries: Optional[int] = None
) -> Iterator[List[torch.Tensor]]:
    """
    Record the attention weights of ``backbone.blocks[block_index]`` on every forward run inside
    the ``with`` block. The forward itself is unchanged; outside the block nothing is recorded.

    Args:
        backbone: a ViT whose ``blocks[i].attn`` has ``qkv`` and ``num_heads`` (yolos_d2's or timm's).
        block_index: which block, e.g. -1 for the last.
        num_queries: Q, keep the rows of the last Q tokens only (e.g. the ``[DET]`` tokens,
            saving memory on large images); None for all N tokens.

    Yields:
        a list that receives, per forward, the (B, num_heads, Q, N) float32 weights of
        :func:`attention_weights`, rows over the whole token sequence.

    Example::

        with record_attention(model.detector.backbone) as recorded:
            model(inputs)
        weights = recorded[-1]
    """
    attn = backbone.blocks[block_index].attn
    recorded: List[torch.Tensor] = []

    def hook(module: nn.Module, inputs: Tuple[torch.Tensor], output: torch.Tensor) -> None:
        recorded.append(
            attention_weights(output, attn.num_heads, _qk_norm(attn, "q_norm"), _qk_norm(attn, "k_norm"), num_queries)
        )

    # Hook qkv rather than attn itself: every attention path projects q, k, v with it, while a
    # block may call attn through another method than forward (see transformer.Block).
    handle = attn.qkv.register_forward_hook(hook)
    try:
        yield recorded
    finally:
        handle.remove()


def det_token_patch_attention(weights: torch.Tensor, grid: Tuple[int, int], num_det_tokens: int) -> torch.Tensor:
    """
    The attention of the ``[DET]`` tokens to the patches, laid out on the patch grid.

    Args:
        weights: (B, heads, Q, N) attention weights over the sequence ``[CLS], patches, [DET] x K``
            (N = 1 + rows * cols + K) whose last Q >= K rows are the queries of the last tokens.
        grid: (rows, cols) of the patch grid, patches being row-major in the sequence.
        num_det_tokens: K.

    Returns:
        (B, heads, K, rows, cols): for each ``[DET]`` token, its weights on the patches (they sum
        to less than 1: the rest goes to ``[CLS]`` and the ``[DET]`` tokens).
    """
    batch, heads, num_queries, num_tokens = weights.shape
    rows, cols = grid
    if num_tokens != 1 + rows * cols + num_det_tokens or num_queries < num_det_tokens:
        raise ValueError(
            f"attention weights of shape {tuple(weights.shape)} do not fit [CLS], a {rows}x{cols} patch grid "
            f"and {num_det_tokens} [DET] tokens"
        )
    patches = weights[:, :, num_queries - num_det_tokens :, 1 : 1 + rows * cols]
    return patches.reshape(batch, heads, num_det_tokens, rows, cols)


def padded_patch_grid(image_size: Tuple[int, int], size_divisibility: int, patch_size: int) -> Tuple[int, int]:
    """(rows, cols) of the patches of an (H, W) image padded by the model to a multiple of ``size_divisibility``."""
    return tuple(math.ceil(side / size_divisibility) * size_divisibility // patch_size for side in image_size)


def attention_over_image(patch_maps: torch.Tensor, patch_size: int, image_size: Tuple[int, int]) -> torch.Tensor:
    """
    Args:
        patch_maps: (..., rows, cols) one value per patch of the padded image.
        patch_size: patch side in pixels.
        image_size: (H, W) of the image before padding (at the top left of the padded one).

    Returns:
        (..., H, W): each patch's value on its pixels, the padding cut off.
    """
    *batch, rows, cols = patch_maps.shape
    pixels = F.interpolate(patch_maps.reshape(1, -1, rows, cols), scale_factor=patch_size, mode="nearest")
    height, width = image_size
    return pixels[0, :, :height, :width].reshape(*batch, height, width)
