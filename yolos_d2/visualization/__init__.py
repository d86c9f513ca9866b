"""
Drawing: predictions on images with detectron2's ``Visualizer``, and the figures of the ``[DET]``
tokens (what each predicts over a dataset, where each attends in an image) with matplotlib; each
written atomically, a failed write naming the file.
"""
from .attention import draw_token_attention
from .files import image_format, save_figure, save_image
from .predictions import MAX_DRAWING_PIXELS, check_drawing_size, draw_predictions
from .token_stats import draw_class_distribution, draw_token_box_centres

__all__ = [
    "MAX_DRAWING_PIXELS",
    "check_drawing_size",
    "draw_class_distribution",
    "draw_predictions",
    "draw_token_attention",
    "draw_token_box_centres",
    "image_format",
    "save_figure",
    "save_image",
]
