from .backbone import ViTWithDetTokens
from .detector import MLP, YOLOSDetector
from .meta_arch import YOLOS

__all__ = ["MLP", "ViTWithDetTokens", "YOLOS", "YOLOSDetector"]
