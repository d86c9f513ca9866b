from .backbone import ViTWithDetTokens
from .criterion import SetCriterion
from .detector import MLP, YOLOSDetector
from .matcher import HungarianMatcher
from .meta_arch import YOLOS

__all__ = ["MLP", "HungarianMatcher", "SetCriterion", "ViTWithDetTokens", "YOLOS", "YOLOSDetector"]
