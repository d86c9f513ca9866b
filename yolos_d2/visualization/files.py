"""Writing drawings and figures atomically (:func:`yolos_d2.utils.file_io.write_atomic`), naming the file on failure."""
import os

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ..utils.file_io import write_atomic

__all__ = ["image_format", "save_figure", "save_image"]


def image_format(path: str) -> str:
    """
    The PIL format (e.g. "PNG") of an image written to ``path``, by its extension; ValueError
    naming ``path`` if PIL writes no format of that extension.
    """
    extension = os.path.splitext(path)[1].lower()
    pil_format = Image.registered_extensions().get(extension)
    if pil_format is None or pil_format not in Image.SAVE:
        what = f"its extension {extension!r}" if extension else "it has no extension, which"
        raise ValueError(f"Cannot write the image {path}: {what} names no image format PIL writes (e.g. .png, .jpg)")
    return pil_format


def save_image(pixels: np.ndarray, path: str) -> None:
    """
    Write ``pixels``, (H, W, 3) uint8 RGB, to ``path`` in the format of its extension; ValueError
    for an extension of no format (:func:`image_format`), :class:`~yolos_d2.utils.file_io.WriteError`
    naming ``path`` if it cannot be written (a full disk), leaving no partial file.
    """
    pil_format = image_format(path)
    write_atomic(path, lambda f: Image.fromarray(pixels).save(f, format=pil_format))


def save_figure(figure: Figure, path: str, dpi: int = 100) -> None:
    """Write ``figure`` to ``path`` as a PNG, as :func:`save_image` writes images."""
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=dpi))
