"""
A trained YOLOS run on images: the predictor, its precisions (fp32, int8, bf16), the attention
of its ``[DET]`` tokens and what each token predicts over a dataset.
"""
from .predictor import DEFAULT_MAX_SIZE, YOLOSPredictor, build_inference_model, metadata_of_test_dataset

__all__ = ["DEFAULT_MAX_SIZE", "YOLOSPredictor", "build_inference_model", "metadata_of_test_dataset"]
