"""
A YOLOS detector exported to ONNX and run by onnxruntime, in float32 or with int8 weights
(onnxruntime's dynamic quantisation of the exported graph), standing in for
:class:`~yolos_d2.modeling.YOLOSDetector`.
"""
import os
import tempfile
from typing import Dict

import torch
from torch import nn

__all__ = ["OnnxRuntimeDetector", "export_detector_onnx", "quantize_onnx_int8"]

INPUT_NAME = "images"
OUTPUT_NAMES = ["pred_logits", "pred_boxes"]


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


def quantize_onnx_int8(source: str, destination: str) -> None:
    """
    Write ``source`` (an ONNX file) to ``destination`` with the weights of its matrix products
    quantised to int8, one scale per output channel, and their inputs quantised to uint8 as they
    come (onnxruntime's dynamic quantisation).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, destination, weight_type=QuantType.QInt8, per_channel=True)


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
