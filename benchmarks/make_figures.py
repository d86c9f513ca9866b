"""
Draw the diagrams of the docs that are not outputs of a tool (those are made by the commands in
docs/inference.md). Run from the repository root:

    .venv/bin/python benchmarks/make_figures.py

and it writes docs/images/position_embeddings.png (docs/models.md).
"""
import os

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "images")

# YOLOS-S (configs/yolos_s.py): DeiT-S pre-trained at 224, init_pe_size = mid_pe_size = 512x864,
# eval size 800; a 640x480 COCO image is resized to 800x1056 (H x W) at test time.
PATCH = 16
STAGES = [
    # (x, y of the lower left corner, (H, W) pixels, colour, title, note)
    (0.2, 4.6, (224, 224), "#9ecae1", "DeiT-S checkpoint", "pos_embed: 14×14 patches\n(224×224 pixels)"),
    (
        4.6, 4.6, (512, 864), "#a1d99b", "init_pe_size 512×864",
        "pos_embed: 32×54 patches,\nin the yolos_d2 checkpoint",
    ),
    (
        4.6, 0.4, (512, 864), "#fdd0a2", "mid_pe_size 512×864",
        "mid_pos_embed: 32×54 patches,\none per block but the last",
    ),
    (
        10.6, 2.0, (800, 1056), "#fcbba1", "input at eval size 800",
        "800×1056 pixels: 50×66 patches\n(a 640×480 image)",
    ),
]
SCALE = 1 / 260  # drawing units per pixel


def grid(ax, x, y, size, colour):
    """The patch grid of ``size`` (H, W) pixels, lower left corner at (x, y)."""
    h, w = size[0] * SCALE, size[1] * SCALE
    ax.add_patch(Rectangle((x, y), w, h, facecolor=colour, edgecolor="#333333", linewidth=1.2))
    step = PATCH * SCALE
    for i in range(1, size[1] // PATCH):
        ax.plot([x + i * step] * 2, [y, y + h], color="#333333", linewidth=0.15)
    for j in range(1, size[0] // PATCH):
        ax.plot([x, x + w], [y + j * step] * 2, color="#333333", linewidth=0.15)
    return w, h


def arrow(ax, start, end, text, text_xy, rad=0.0):
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle="-|>", mutation_scale=14, linewidth=1.4, color="#444444",
            connectionstyle=f"arc3,rad={rad}",
        )
    )
    ax.text(*text_xy, text, fontsize=8.5, ha="center", va="center", color="#222222")


def position_embeddings(path: str) -> None:
    fig = Figure(figsize=(11, 5.6), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 15.2)
    ax.set_ylim(-0.9, 7.6)
    ax.axis("off")
    boxes = {}
    for x, y, size, colour, title, note in STAGES:
        w, h = grid(ax, x, y, size, colour)
        ax.text(x, y + h + 0.25, title, fontsize=10, fontweight="bold", ha="left", va="bottom")
        ax.text(x, y - 0.15, note, fontsize=8.5, ha="left", va="top")
        boxes[title] = (x, y, w, h)
    x0, y0, w0, h0 = boxes["DeiT-S checkpoint"]
    x1, y1, w1, h1 = boxes["init_pe_size 512×864"]
    x2, y2, w2, h2 = boxes["mid_pe_size 512×864"]
    x3, y3, w3, h3 = boxes["input at eval size 800"]
    arrow(ax, (x0 + w0 + 0.1, y0 + h0 / 2), (x1 - 0.1, y1 + h1 / 2),
          "once, by the converter:\nbicubic 14×14 → 32×54", (3.25, y0 + h0 / 2 + 1.05))
    arrow(ax, (x1 + w1 + 0.1, y1 + h1 / 2), (x3 - 0.1, y3 + h3 * 0.75),
          "each forward: bicubic\n32×54 → 50×66", (9.2, 6.3), rad=-0.15)
    arrow(ax, (x2 + w2 + 0.1, y2 + h2 / 2), (x3 - 0.1, y3 + h3 * 0.25),
          "each forward: bicubic\n32×54 → 50×66", (9.2, 0.95), rad=0.15)
    ax.text(
        0.2, 2.6,
        "YOLOS-S (configs/yolos_s.py)\n\n"
        "A grid that equals the input's is used as it is.\n"
        "The entries of [CLS] and of the 100 [DET] tokens\nare never resized.\n"
        "Without a gradient (inference) the resized\nembeddings are cached per input grid.\n"
        "mid_pos_embed starts from random values\n(it is not in DeiT) and is added after\n"
        "every block but the last.\n"
        "In training the input's grid changes with the\nbatch's size, and the resize is trained through.",
        fontsize=8.5, ha="left", va="top", color="#222222",
    )
    fig.savefig(path)


if __name__ == "__main__":
    os.makedirs(IMAGES, exist_ok=True)
    position_embeddings(os.path.join(IMAGES, "position_embeddings.png"))
    print(os.path.join("docs", "images", "position_embeddings.png"))
