"""
Drawing: predictions on images with detectron2's ``Visualizer``, and the figures of the ``[DET]``
tokens (what each predicts over a dataset, where each attends in an image) with matplotlib.
"""
from .attention import draw_token_attention
from .predictions import draw_predictions
from .token_stats import draw_class_distribution, draw_token_box_centres

__all__ = ["draw_class_distribution", "draw_predictions", "draw_token_attention", "draw_token_box_centres"]
