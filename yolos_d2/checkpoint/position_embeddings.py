"""
The patch grids of a checkpoint's position embeddings, and their resizing to a model's.

A YOLOS checkpoint's patch position embeddings are defined on the patch grid of the
``init_pe_size`` (``pos_embed``) and ``mid_pe_size`` (``mid_pos_embed``) it was made with. The
token count alone does not give the grid (4150 patches may be 50x83 or 83x50), so yolos_d2's
checkpoints record it under :data:`GRIDS_KEY`, and converters read it from the source format
(the original's ``args``, Hugging Face's ``image_size``). A checkpoint loaded into a model whose
grids differ has its embeddings resized as the model resizes them at run time.
"""
import logging
from typing import Any, Dict, List, Mapping

import torch

from ..modeling.backbone import ViTWithDetTokens
from ..modeling.position_embedding import Grid, resize_patch_pos_embed

__all__ = ["GRIDS_KEY", "grids_record", "position_embedding_grids", "read_grids", "resize_position_embeddings"]

logger = logging.getLogger(__name__)

# Entry of a checkpoint file: {state-dict key: [rows, cols]} of each patch position embedding.
GRIDS_KEY = "position_embedding_grids"


def position_embedding_grids(model: torch.nn.Module) -> Dict[str, Grid]:
    """
    The patch grid (rows, cols) of each patch position embedding of ``model``, by state-dict key,
    e.g. ``{"detector.backbone.pos_embed": (50, 83)}``.
    """
    grids = {}
    for name, module in model.named_modules():
        if isinstance(module, ViTWithDetTokens):
            prefix = f"{name}." if name else ""
            grids[prefix + "pos_embed"] = module.init_grid
            if module.mid_grid is not None:
                grids[prefix + "mid_pos_embed"] = module.mid_grid
    return grids


def grids_record(grids: Mapping[str, Grid]) -> Dict[str, List[int]]:
    """``grids`` as a checkpoint file records them under :data:`GRIDS_KEY`."""
    return {key: list(grid) for key, grid in grids.items()}


def read_grids(checkpoint: Mapping[str, Any], source: str) -> Dict[str, Grid]:
    """
    The grids a checkpoint file records under :data:`GRIDS_KEY` (empty if none).

    Raises:
        ValueError naming ``source`` if the entry is not a dict of (rows, cols) pairs.
    """
    recorded = checkpoint.get(GRIDS_KEY, {})
    try:
        grids = {str(k): (int(rows), int(cols)) for k, (rows, cols) in recorded.items()}
    except (AttributeError, TypeError, ValueError):
        grids = None
    if grids is None or any(n < 1 for grid in grids.values() for n in grid):
        raise ValueError(f"{source!r}: its {GRIDS_KEY!r} entry is not a dict of key: [rows, cols], but {recorded!r}")
    return grids


def resize_position_embeddings(
    state: Dict[str, torch.Tensor], grids: Mapping[str, Grid], target_grids: Mapping[str, Grid], source: str
) -> Dict[str, torch.Tensor]:
    """
    Resize each patch position embedding of ``state`` whose grid in ``grids`` differs from its
    grid in ``target_grids`` (both: state-dict key -> (rows, cols)), bicubically as the model does
    at run time (:func:`~yolos_d2.modeling.position_embedding.resize_patch_pos_embed`), logging
    one line per resized tensor. Tensors are (..., 1 + rows * cols + S, D): the ``[CLS]`` entry,
    the patches, then S ``[DET]`` entries (S = 0 for ``pos_embed``, K for ``mid_pos_embed``);
    only the patches change.

    Returns:
        ``state`` with the resized tensors replaced (a new dict; ``state`` is not modified).

    Raises:
        ValueError naming ``source`` and the key if a tensor has fewer tokens than its grid.
    """
    out = dict(state)
    for key, target in target_grids.items():
        if key not in state or key not in grids or tuple(grids[key]) == tuple(target):
            continue
        out[key] = _resize(state[key], tuple(grids[key]), tuple(target), f"{source!r}: {key}")
        logger.info(
            "%s: resized %s from a %dx%d to a %dx%d patch grid (bicubic).", source, key, *grids[key], *target
        )
    return out


def _resize(pos_embed: torch.Tensor, grid: Grid, target: Grid, name: str) -> torch.Tensor:
    """(..., 1 + G + S, D) with G = grid[0] * grid[1] -> (..., 1 + target[0] * target[1] + S, D)."""
    *lead, num_tokens, dim = pos_embed.shape
    num_patches = grid[0] * grid[1]
    if num_tokens < 1 + num_patches:
        raise ValueError(
            f"{name} holds {num_tokens} position embeddings, fewer than [CLS] and a {grid[0]}x{grid[1]} grid"
        )
    flat = pos_embed.reshape(-1, num_tokens, dim)
    patches = resize_patch_pos_embed(flat[:, 1 : 1 + num_patches], grid, target)
    resized = torch.cat([flat[:, :1], patches, flat[:, 1 + num_patches :]], dim=1)
    return resized.reshape(*lead, -1, dim)
