"""Figures of what each ``[DET]`` token predicts over a dataset: where its boxes lie, which classes it predicts."""
import math
from typing import Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .files import save_figure

__all__ = ["draw_class_distribution", "draw_token_box_centres"]

# The names and colours of COCO's size categories 0, 1, 2.
SIZE_NAMES = ("small", "medium", "large")
SIZE_COLOURS = ("tab:blue", "tab:green", "tab:red")


def _panel_grid(num_panels: int) -> Tuple[int, int]:
    """(rows, cols) of the most square grid holding ``num_panels`` panels."""
    cols = math.ceil(math.sqrt(num_panels))
    return math.ceil(num_panels / cols), cols


def draw_token_box_centres(
    tokens: np.ndarray,
    centres: np.ndarray,
    size_categories: np.ndarray,
    num_tokens: int,
    path: str,
    panel_inches: float = 1.2,
) -> None:
    """
    Save a figure of one panel per token: the centres of its boxes over the image (0..1, y down),
    coloured by COCO size.

    Args:
        tokens: (M,) the token index of each box, in 0..num_tokens-1.
        centres: (M, 2) cx, cy of each box, normalised by the image size.
        size_categories: (M,) COCO's size category of each box: 0 small, 1 medium, 2 large.
    """
    rows, cols = _panel_grid(num_tokens)
    fig = Figure(figsize=(cols * panel_inches, rows * panel_inches + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for token, ax in enumerate(axes.flat):
        if token >= num_tokens:
            ax.set_axis_off()
            continue
        for size, colour in enumerate(SIZE_COLOURS):
            points = centres[(tokens == token) & (size_categories == size)]
            ax.scatter(points[:, 0], points[:, 1], color=colour, s=3, alpha=0.6, linewidths=0)
        ax.set(xlim=(0, 1), ylim=(1, 0), xticks=[], yticks=[], aspect="equal")
        ax.set_title(f"[DET] {token}", fontsize=7, pad=2)
    present = sorted(set(size_categories.tolist()))  # a legend entry only for the sizes drawn
    handles = [Line2D([], [], marker="o", linestyle="", color=SIZE_COLOURS[s], label=SIZE_NAMES[s]) for s in present]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle("Centres of each [DET] token's boxes, by COCO size", fontsize=9)
    save_figure(fig, path)


def draw_class_distribution(
    token_distribution: np.ndarray, gt_counts: np.ndarray, class_names: Sequence[str], path: str
) -> None:
    """
    Save a heat map of each token's predicted-class shares (tokens x classes) above bars of the
    class shares of all predictions and of the ground truth.

    Args:
        token_distribution: (K, C) row t is the share of token t's predictions in each class.
        gt_counts: (C,) the number of ground-truth annotations of each class.
        class_names: (C,) the names of the classes.
    """
    num_tokens, num_classes = token_distribution.shape
    fig = Figure(figsize=(min(5.0 + 0.16 * num_classes, 16.0), 4.0 + 0.06 * num_tokens), layout="constrained")
    heat, bars = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    image = heat.imshow(token_distribution, aspect="auto", cmap="Blues", vmin=0, interpolation="nearest")
    heat.set_ylabel("[DET] token")
    heat.yaxis.set_major_locator(MaxNLocator(integer=True))
    heat.set_title("Predicted classes of each [DET] token (share of its predictions)", fontsize=9)
    fig.colorbar(image, ax=heat, fraction=0.03, label="share")
    positions = np.arange(num_classes)
    label_size = max(4, 9 - num_classes // 20)
    # The shared x axis names the classes under the heat map too, not only under the bars.
    heat.tick_params(axis="x", labelbottom=True)
    heat.set_xticks(positions)
    heat.set_xticklabels(class_names, rotation=90, fontsize=label_size)
    heat.set_xlabel("predicted class")
    bars.bar(positions - 0.2, token_distribution.mean(axis=0), width=0.4, label="all tokens")
    bars.bar(positions + 0.2, gt_counts / max(gt_counts.sum(), 1), width=0.4, label="ground truth")
    bars.set_ylabel("share")
    bars.legend(fontsize=7, ncol=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    bars.set_xticks(positions)
    bars.set_xticklabels(class_names, rotation=90, fontsize=label_size)
    save_figure(fig, path)
