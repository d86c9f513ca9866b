"""Resizing of ViT patch position embeddings to a new patch grid.

YOLOS defines its patch position embedding on the grid of ``init_pe_size`` and resizes it to
the patch grid of every input, as the original implementation does: bicubic interpolation with
``align_corners=False`` and no antialiasing.
"""
import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

Grid = Tuple[int, int]


def patch_grid(image_size: Tuple[int, int], patch_size: int) -> Grid:
    """Patch grid (rows, cols) of an image of ``image_size`` (H, W) pixels; partial patches are dropped."""
    return image_size[0] // patch_size, image_size[1] // patch_size


def embedding_grid(size: Sequence[int], patch_size: int, name: str) -> Grid:
    """
    Patch grid (rows, cols) on which a position embedding of ``size`` (H, W) pixels is defined.

    Raises:
        ValueError naming ``name`` if ``size`` is not whole patches of at least one patch each
        side, with the nearest valid sizes. (The original YOLOS floored sizes: its YOLOS-Ti
        ``init_pe_size`` 800x1333 is the 50x83 grid of 800x1328.)
    """
    size = tuple(int(s) for s in size)
    if len(size) == 2 and all(s >= patch_size and s % patch_size == 0 for s in size):
        return patch_grid(size, patch_size)
    below = tuple(max(patch_size, s // patch_size * patch_size) for s in size)
    above = tuple(max(patch_size, -(-s // patch_size) * patch_size) for s in size)
    nearest = " or ".join(str(s) for s in dict.fromkeys([below, above]))
    raise ValueError(
        f"{name}={size} must be (H, W) pixels in whole patches of patch_size={patch_size} on each side; "
        f"nearest valid: {nearest}"
    )


def square_grid(num_patches: int) -> Grid:
    """The (g, g) grid holding ``num_patches`` patches; raises if ``num_patches`` is not a square."""
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patch position embeddings do not form a square grid")
    return side, side


def resize_patch_pos_embed(pos_embed: torch.Tensor, old_grid: Grid, new_grid: Grid) -> torch.Tensor:
    """
    Args:
        pos_embed: (N, old_grid[0] * old_grid[1], D) patch position embeddings, row-major over the grid.
        old_grid, new_grid: (rows, cols) of the patch grid before and after.

    Returns:
        (N, new_grid[0] * new_grid[1], D); ``pos_embed`` itself when the grids are equal.
    """
    # While exporting, a grid computed from the input's shape is symbolic (a SymInt, or a 0-d tensor
    # under jit tracing): always resize then, so that the graph serves every input size.
    if all(isinstance(n, int) for n in new_grid) and tuple(old_grid) == tuple(new_grid):
        return pos_embed
    n, num_patches, dim = pos_embed.shape
    if num_patches != old_grid[0] * old_grid[1]:
        raise ValueError(
            f"{num_patches} patch position embeddings do not fit a {old_grid[0]}x{old_grid[1]} grid"
        )
    grid = pos_embed.transpose(1, 2).reshape(n, dim, *old_grid)
    # Interpolate in float32: bicubic is not implemented for half precision on every device.
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode="bicubic", align_corners=False)
    return grid.to(pos_embed.dtype).flatten(2).transpose(1, 2)


def sincos_patch_pos_embed(grid: Grid, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """
    The fixed 2-D sine-cosine table of MAE (He et al., 2022), used as a starting point for
    learned patch position embeddings.

    Args:
        grid: (rows, cols) of the patch grid.
        dim: embedding width; must be divisible by 4 (sin and cos for each of the two axes).

    Returns:
        (1, rows * cols, dim), row-major over the grid: the first half of the channels encodes
        the column, the second half the row.
    """
    if dim % 4 != 0:
        raise ValueError(f"the sine-cosine position embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(
        torch.arange(grid[0], dtype=torch.float64), torch.arange(grid[1], dtype=torch.float64), indexing="ij"
    )
    halves = []
    for position in (cols.flatten(), rows.flatten()):
        angle = position[:, None] * omega[None, :]
        halves += [angle.sin(), angle.cos()]
    return torch.cat(halves, dim=1).float().unsqueeze(0)
