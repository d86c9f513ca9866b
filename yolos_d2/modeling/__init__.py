from .backbone import ViTWithDetTokens
from .criterion import SetCriterion
from .detector import MLP, YOLOSDetector
from .matcher import HungarianMatcher
from .meta_arch import YOLOS
from .postprocessing import check_selection, select_detections, token_detections

__all__ = [
    "MLP",
    "HungarianMatcher",
    "SetCriterion",
    "ViTWithDetTokens",
    "YOLOS",
    "YOLOSDetector",
    "check_selection",
    "select_detections",
    "token_detections",
]
