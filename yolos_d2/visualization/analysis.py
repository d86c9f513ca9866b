"""
The figures and the page of a detector's analysis (``yolos-analyze``): per-class AP, precision-recall
curves, the errors and what they cost, the confusion matrix, an image with its ground truth beside
its predictions, and one HTML page showing them. Each written atomically, a failed write naming the file.
"""
import html
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ..utils.file_io import write_atomic
from .files import save_figure
from .token_stats import _panel_grid

__all__ = [
    "DrawnBoxes",
    "PageSection",
    "draw_class_ap",
    "draw_class_precision_recall",
    "draw_confusion_matrix",
    "draw_error_breakdown",
    "draw_ground_truth_and_predictions",
    "draw_precision_recall",
    "write_page",
]

# The colours of the kinds of boxes drawn on an image, by the kind's index.
_KIND_COLOURS = colormaps["tab10"].colors
# A cell of the confusion matrix shows its count up to this many classes (beyond, they are unreadable).
_MAX_ANNOTATED_CLASSES = 20


def draw_class_ap(class_names: Sequence[str], ap: np.ndarray, ap50: np.ndarray, path: str) -> None:
    """
    Save horizontal bars of each class's AP and AP50 (0 to 1, nan for a class without ground
    truth, left out), the best class on top.
    """
    shown = np.flatnonzero(~np.isnan(ap))
    shown = shown[np.argsort(-ap[shown], kind="stable")]
    positions = np.arange(len(shown))
    fig = Figure(figsize=(6.0, 1.2 + 0.22 * len(shown)), layout="constrained")
    ax = fig.subplots()
    ax.barh(positions - 0.2, ap50[shown], height=0.4, label="AP50", color="tab:orange")
    ax.barh(positions + 0.2, ap[shown], height=0.4, label="AP (IoU 0.5:0.95)", color="tab:blue")
    ax.set_yticks(positions)
    ax.set_yticklabels([class_names[k] for k in shown], fontsize=max(5, 9 - len(shown) // 20))
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="average precision")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("AP of each class", fontsize=9)
    save_figure(fig, path)


def draw_precision_recall(recall: np.ndarray, curves: Mapping[str, np.ndarray], title: str, path: str) -> None:
    """
    Save precision-recall curves on one plot.

    Args:
        recall: (R,) the recall of each point, 0 to 1.
        curves: label -> (R,) precision at each recall.
    """
    fig = Figure(figsize=(4.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for label, precision in curves.items():
        ax.plot(recall, precision, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def draw_class_precision_recall(
    recall: np.ndarray,
    curves: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    path: str,
    panel_inches: float = 2.2,
) -> None:
    """
    Save one panel per class with its precision-recall curves.

    Args:
        recall: (R,) the recall of each point, 0 to 1.
        curves: label -> (K, R) each class's precision at each recall (nan: no ground truth).
        class_names: (K,)
    """
    rows, cols = _panel_grid(len(class_names))
    fig = Figure(figsize=(cols * panel_inches, rows * panel_inches + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True).flat
    for ax in axes[len(class_names) :]:
        ax.set_axis_off()
    for k, (ax, name) in enumerate(zip(axes, class_names)):
        for label, precision in curves.items():
            ax.plot(recall, precision[k], label=label, linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1.02))
        ax.set_xlabel("recall", fontsize=7)
        ax.set_ylabel("precision", fontsize=7)
        ax.label_outer()
        ax.tick_params(labelsize=6)
        ax.set_title(name, fontsize=7, pad=2)
    handles = [Line2D([], [], color=f"C{i}", label=label) for i, label in enumerate(curves)]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle("Precision-recall of each class", fontsize=9)
    save_figure(fig, path)


def draw_error_breakdown(
    error_types: Sequence[str], counts: Sequence[int], delta_ap: Sequence[float], path: str
) -> None:
    """
    Save bars of the number of errors of each type and, beside, the AP gained by fixing them.

    Args:
        error_types: (E,) names; counts: (E,); delta_ap: (E,) AP points (0 to 100).
    """
    fig = Figure(figsize=(7.5, 0.9 + 0.3 * len(error_types)), layout="constrained")
    count_axes, delta_axes = fig.subplots(1, 2, sharey=True)
    positions = np.arange(len(error_types))
    count_axes.bar_label(count_axes.barh(positions, counts, color="tab:red"), fmt="%d", fontsize=7, padding=2)
    count_axes.set(yticks=positions, yticklabels=error_types, xlabel="errors")
    count_axes.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    count_axes.invert_yaxis()
    delta_axes.bar_label(delta_axes.barh(positions, delta_ap, color="tab:green"), fmt="%.1f", fontsize=7, padding=2)
    delta_axes.set(xlabel="AP50 gained if fixed (points)")
    for ax in (count_axes, delta_axes):
        ax.margins(x=0.15)
    fig.suptitle("Errors at IoU 0.5 and what fixing each kind gains", fontsize=9)
    save_figure(fig, path)


def draw_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str) -> None:
    """
    Save the confusion matrix as a heat map of each row's shares, with the counts where there
    are few classes.

    Args:
        matrix: (C, C) int, row the true class, column the predicted class.
        labels: (C,) the names of the rows and columns.
    """
    size = len(labels)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    inches = min(3.0 + 0.3 * size, 18.0)
    fig = Figure(figsize=(inches + 1.0, inches), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the row")
    font = max(4, 9 - size // 10)
    ax.set_xticks(np.arange(size))
    ax.set_xticklabels(labels, rotation=90, fontsize=font)
    ax.set_yticks(np.arange(size))
    ax.set_yticklabels(labels, fontsize=font)
    ax.set(xlabel="predicted", ylabel="true")
    if size <= _MAX_ANNOTATED_CLASSES:
        for (row, col), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if shares[row, col] > 0.5 else "black"
                ax.text(col, row, str(count), ha="center", va="center", fontsize=font, color=colour)
    ax.set_title("Confusion matrix at IoU 0.5", fontsize=9)
    save_figure(fig, path)


class DrawnBoxes(NamedTuple):
    """N boxes to draw on an image, each of a kind (e.g. right, or the kind of error) with its colour."""

    boxes: np.ndarray  # (N, 4) XYWH in the image's pixels
    labels: Sequence[str]  # (N,) the text of each
    kinds: Sequence[int]  # (N,) the index of each one's kind in the kind names, below 10 (one colour each)


def draw_ground_truth_and_predictions(
    image: np.ndarray,
    truth: DrawnBoxes,
    predictions: DrawnBoxes,
    kind_names: Sequence[str],
    title: str,
    path: str,
    panel_inches: float = 6.0,
) -> None:
    """
    Save ``image`` (H, W, 3) uint8 RGB twice side by side: with its ground-truth boxes ``truth``,
    and with the ``predictions``; each box in the colour of its kind, with a legend of the kinds drawn.
    """
    height, width = image.shape[:2]
    fig = Figure(figsize=(2 * panel_inches, panel_inches * height / width + 0.8), layout="constrained")
    for ax, (name, drawn) in zip(fig.subplots(1, 2), (("ground truth", truth), ("predictions", predictions))):
        _draw_boxes(ax, image, drawn)
        ax.set_title(f"{name}: {len(drawn.labels)}", fontsize=9)
    kinds = sorted({*truth.kinds, *predictions.kinds})
    handles = [Line2D([], [], color=_KIND_COLOURS[k], linewidth=3, label=kind_names[k]) for k in kinds]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def _draw_boxes(ax, image: np.ndarray, drawn: DrawnBoxes) -> None:
    """Show ``image`` on ``ax`` with the boxes of ``drawn``, each in the colour of its kind, labelled."""
    ax.imshow(image)
    for (x, y, w, h), label, kind in zip(drawn.boxes, drawn.labels, drawn.kinds):
        colour = _KIND_COLOURS[kind]
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=1.5))
        background = {"facecolor": colour, "alpha": 0.7, "pad": 1, "linewidth": 0}
        ax.text(x, y, label, fontsize=7, va="bottom", bbox=background)
    ax.set_axis_off()


@dataclass(frozen=True)
class PageSection:
    """A part of the page: a heading, a paragraph, a table, links and figures, each optional but the heading."""

    heading: str
    text: str = ""
    table: Optional[Tuple[Sequence[str], Sequence[Sequence[object]]]] = None  # (header, rows)
    links: Sequence[Tuple[str, str]] = ()  # (relative path, text)
    figures: Sequence[Tuple[str, str]] = ()  # (relative path, caption)


def write_page(title: str, sections: Sequence[PageSection], path: str) -> None:
    """Write an HTML page of ``sections`` to ``path``: plain HTML, files linked by the relative paths given."""
    write_atomic(path, lambda f: f.write(_page(title, sections).encode()))


_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}figure{margin:1em 0}img{max-width:100%}"
    "figcaption{font-size:90%;color:#555}"
)


def _page(title: str, sections: Sequence[PageSection]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.table:
            parts.append(_table(*section.table))
        if section.links:
            links = " · ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for href, text in section.links)
            parts.append(f"<p>{links}</p>")
        for source, caption in section.figures:
            parts.append(
                f'<figure><img src="{html.escape(source)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
