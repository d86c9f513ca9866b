"""
The detector and the whole prediction as files other runtimes load: ONNX (and its int8
quantisation, run by onnxruntime) and TorchScript.
"""
from .onnx import OnnxRuntimeDetector, export_detector_onnx, export_pipeline_onnx, quantize_onnx_int8
from .pipeline import YOLOSPipeline, resize_like_pil
from .torchscript import export_torchscript

__all__ = [
    "OnnxRuntimeDetector",
    "YOLOSPipeline",
    "export_detector_onnx",
    "export_pipeline_onnx",
    "export_torchscript",
    "quantize_onnx_int8",
    "resize_like_pil",
]
