"""The figure of a model's accuracy against its speed at several input sizes, one line per precision."""
from typing import Mapping, Sequence, Tuple

from matplotlib.figure import Figure

from .files import save_figure

__all__ = ["draw_speed_accuracy"]


def draw_speed_accuracy(curves: Mapping[str, Sequence[Tuple[int, float, float]]], title: str, path: str) -> None:
    """
    Save a plot of AP against milliseconds per image: one line per precision through its points
    in the order given, each point labelled with its input size.

    Args:
        curves: precision name -> (input size in pixels, milliseconds per image, AP) of each point.
        title: the figure's title.
    """
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for precision, points in curves.items():
        _, milliseconds, aps = zip(*points)
        ax.plot(milliseconds, aps, marker="o", label=precision)
        for size, ms, ap in points:
            ax.annotate(str(size), (ms, ap), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("milliseconds per image")
    ax.set_ylabel("AP")
    ax.grid(alpha=0.3)
    ax.legend(title="precision", fontsize=8)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)
