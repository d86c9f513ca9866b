from .coco_evaluation import FastCOCOEvaluator

__all__ = ["FastCOCOEvaluator"]
