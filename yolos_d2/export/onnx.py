"""
ONNX files of the YOLOS detector and of the whole prediction (:class:`YOLOSPipeline`), their int8
quantisation (onnxruntime's dynamic quantisation), and the detector's export run by onnxruntime
standing in for :class:`~yolos_d2.modeling.YOLOSDetector`.
"""
import os
import tempfile
from typing import Callable, Dict, Optional

import torch
from torch import nn

from .pipeline import OUTPUT_NAMES as PIPELINE_OUTPUT_NAMES
from .pipeline import YOLOSPipeline

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "PIPELINE_INPUT_NAME",
    "OnnxRuntimeDetector",
    "export_detector_onnx",
    "export_pipeline_onnx",
    "quantize_onnx_int8",
]

INPUT_NAME = "images"
OUTPUT_NAMES = ["pred_logits", "pred_boxes"]
PIPELINE_INPUT_NAME = "image"


def export_detector_onnx(detector: nn.Module, images: torch.Tensor, path: str) -> None:
    """
    Write ``detector`` to ``path`` as one ONNX file (weights included) whose input ``images``
    has a dynamic batch size, height and width.

    Args:
        detector: a :class:`~yolos_d2.modeling.YOLOSDetector` in eval mode.
        images: (B, 3, H, W) example input that is traced.
    """
    with torch.no_grad():
        torch.onnx.export(
            detector,
            (images,),
            path,
            input_names=[INPUT_NAME],
            output_names=OUTPUT_NAMES,
            dynamic_shapes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"}},
            dynamo=True,
            external_data=False,
        )


def _stable_sort_translation() -> Dict[Callable, Callable]:
    """
    ``aten.sort.stable``, which PyTorch's ONNX functions lack, as ONNX ``TopK`` over the whole
    axis: ``TopK`` puts equal values in index order, as a stable sort does.
    """
    from onnxscript import opset18 as op

    def sort_stable(self, dim: int = -1, descending: bool = False, stable: Optional[bool] = None):
        length = op.Shape(self, start=dim, end=dim + 1) if dim != -1 else op.Shape(self, start=-1)
        return op.TopK(self, length, axis=dim, largest=descending, sorted=True)

    return {torch.ops.aten.sort.stable: sort_stable}


def export_pipeline_onnx(pipeline: YOLOSPipeline, image: torch.Tensor, path: str) -> None:
    """
    Write ``pipeline`` to ``path`` as one ONNX file (weights included) whose input ``image`` has a
    dynamic height and width.

    Args:
        pipeline: its model in eval mode.
        image: (H, W, 3) uint8 example input that is traced.
    """
    dynamic = {PIPELINE_INPUT_NAME: {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}}
    with torch.no_grad():
        # torch.export first: the ONNX exporter's own capture fails on the resize of an image whose
        # size the graph computes (PyTorch 2.14), the exported program does not.
        program = torch.export.export(pipeline, (image,), dynamic_shapes=dynamic)
        torch.onnx.export(
            program,
            (image,),
            path,
            input_names=[PIPELINE_INPUT_NAME],
            output_names=PIPELINE_OUTPUT_NAMES,
            dynamic_shapes={PIPELINE_INPUT_NAME: {0: "height", 1: "width"}},  # names the dimensions
            dynamo=True,
            external_data=False,
            custom_translation_table=_stable_sort_translation(),
        )


def quantize_onnx_int8(source: str, destination: str) -> None:
    """
    Write ``source`` (an ONNX file) to ``destination`` with the weights of its matrix products
    quantised to int8 in [-64, 64] (7 bits), one scale per output channel, and their inputs
    quantised to uint8 as they come (onnxruntime's dynamic quantisation).

    7 bits because x86 CPUs without VNNI (AVX2 only, or AVX-512 without VNNI) multiply uint8 by
    int8 in onnxruntime with VPMADDUBSW, which saturates each sum of two products at 32767:
    2 x 255 x 64 fits, 2 x 255 x 127 does not. Full-range weights cost the quick-start model 1 AP
    on such a CPU; 7 bits keep it within 0.05 AP of float32 there and with VNNI (docs/deployment.md).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, destination, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)


class OnnxRuntimeDetector(nn.Module):
    """
    A detector's ONNX export run by onnxruntime (CPUExecutionProvider): called on (B, 3, H, W)
    float32 images, it returns the dict of :meth:`YOLOSDetector.forward`, "pred_logits"
    (B, K, C + 1) and "pred_boxes" (B, K, 4) cx,cy,w,h normalised, as CPU tensors. Build it
    with :meth:`export`.

    Attributes:
        path: the ONNX file the session runs.
        num_classes, backbone: those of the exported detector (what the meta-architecture reads).
    """

    def __init__(self, path: str, detector: nn.Module, num_threads: int = 0, folder=None):
        """
        Args:
            path: an ONNX export of ``detector``.
            detector: the :class:`~yolos_d2.modeling.YOLOSDetector` exported.
            num_threads: onnxruntime's intra-op threads; 0 uses torch's count.
            folder: a ``TemporaryDirectory`` holding ``path``, kept as long as this object.
        """
        import onnxruntime

        super().__init__()
        self.path = path
        self.num_classes = detector.num_classes
        self.backbone = detector.backbone
        self._detector, self._num_threads, self._folder = detector, num_threads, folder
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    @classmethod
    def export(cls, detector: nn.Module, example: torch.Tensor, num_threads: int = 0) -> "OnnxRuntimeDetector":
        """
        ``detector`` (a :class:`~yolos_d2.modeling.YOLOSDetector` in eval mode) exported to a
        temporary ONNX file, traced on ``example`` (B, 3, H, W); any input size runs.
        """
        folder = tempfile.TemporaryDirectory(prefix="yolos_d2_onnx_")
        path = os.path.join(folder.name, "detector.onnx")
        export_detector_onnx(detector, example.cpu(), path)
        return cls(path, detector, num_threads, folder)

    def int8(self) -> "OnnxRuntimeDetector":
        """This export with int8 weights (:func:`quantize_onnx_int8`), in a session of its own."""
        folder = tempfile.TemporaryDirectory(prefix="yolos_d2_onnx_int8_")
        path = os.path.join(folder.name, "detector_int8.onnx")
        quantize_onnx_int8(self.path, path)
        return OnnxRuntimeDetector(path, self._detector, self._num_threads, folder)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        outputs = self.session.run(OUTPUT_NAMES, {INPUT_NAME: images.detach().cpu().float().numpy()})
        return {name: torch.from_numpy(value) for name, value in zip(OUTPUT_NAMES, outputs)}
