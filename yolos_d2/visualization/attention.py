"""The figure of a ``[DET]`` token's attention over an image, per head and averaged over the heads."""
import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .files import save_figure

__all__ = ["draw_token_attention"]


def draw_token_attention(
    image: np.ndarray,
    head_maps: np.ndarray,
    box_xyxy: Sequence[float],
    title: str,
    path: str,
    panel_inches: float = 2.5,
) -> None:
    """
    Save a figure of panels over ``image``: the mean of ``head_maps`` over the heads, then each
    head, each panel with its own colour scale (and colour bar) from 0 to its largest weight.

    Args:
        image: (H, W, 3) uint8 RGB.
        head_maps: (heads, H, W) attention weights on the image's pixels.
        box_xyxy: the token's box in the image's pixels, drawn on every panel.
    """
    maps = [head_maps.mean(axis=0)] + list(head_maps)
    names = [f"mean of {len(head_maps)} heads"] + [f"head {h}" for h in range(len(head_maps))]
    cols = min(len(maps), 4)
    rows = math.ceil(len(maps) / cols)
    height, width = image.shape[:2]
    fig = Figure(figsize=(cols * panel_inches, rows * panel_inches * height / width + 0.4), layout="constrained")
    x0, y0, x1, y1 = box_xyxy
    axes = fig.subplots(rows, cols, squeeze=False).flat
    for ax in axes[len(maps) :]:
        ax.axis("off")
    for ax, attention, name in zip(axes, maps, names):
        ax.imshow(image)
        heat = ax.imshow(attention, cmap="inferno", alpha=0.6, vmin=0, vmax=attention.max())
        fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="cyan", linewidth=1.5))
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
