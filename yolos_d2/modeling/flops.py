"""Analytic FLOP counts of the YOLOS detector (2 FLOPs per multiply-add of its matrix products)."""
from typing import Tuple

from .backbone import ViTWithDetTokens
from .position_embedding import patch_grid

__all__ = ["detector_flops"]


def detector_flops(
    backbone: ViTWithDetTokens, num_classes: int, image_size: Tuple[int, int], det_only_last_block: bool = False
) -> int:
    """
    FLOPs of one image through the patch embedding, the encoder blocks and the two 3-layer heads;
    normalisations, activations, softmax and additions are left out (a few percent).

    Args:
        backbone: gives the patch size, width D, depth, MLP width and number K of ``[DET]`` tokens.
        num_classes: C; the class head has C + 1 outputs.
        image_size: (H, W) pixels of the input tensor.
        det_only_last_block: count the last block for the K ``[DET]`` queries only, as
            ``ViTWithDetTokens.forward`` computes it, instead of all N tokens.
    """
    rows, cols = patch_grid(image_size, backbone.patch_size)
    dim, k = backbone.embed_dim, backbone.num_det_tokens
    hidden = backbone.blocks[0].mlp.fc1.out_features
    num_tokens = 1 + rows * cols + k
    flops = 2 * rows * cols * 3 * backbone.patch_size**2 * dim
    for i in range(backbone.depth):
        queries = k if det_only_last_block and i == backbone.depth - 1 else num_tokens
        flops += 2 * num_tokens * dim * 3 * dim  # qkv
        flops += 2 * 2 * queries * num_tokens * dim  # q k^T and attention x v
        flops += 2 * queries * dim * dim + 2 * 2 * queries * dim * hidden  # proj and MLP
    flops += 2 * k * (2 * dim * dim + dim * (num_classes + 1))  # class head
    flops += 2 * k * (2 * dim * dim + dim * 4)  # box head
    return flops
