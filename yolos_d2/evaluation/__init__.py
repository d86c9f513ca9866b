from .coco_evaluation import FastCOCOEvaluator
from .fast_cocoeval import FastCOCOeval

__all__ = ["FastCOCOEvaluator", "FastCOCOeval"]
