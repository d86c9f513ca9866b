"""
Export the YOLOS detector to ONNX or TorchScript, for any batch size and image size::

    yolos-export --config-file CONFIG --output yolos.onnx [--weights WEIGHTS] \
        [--format {onnx,torchscript}] [--height H --width W] [KEY=VALUE ...]

(also ``python -m yolos_d2.tools.export``). The graph is ``model.detector``
(:class:`~yolos_d2.modeling.YOLOSDetector`) with the weights of ``--weights`` (or
``train.init_checkpoint``; random ones, with a warning, when it is empty), traced on the CPU:

- input ``images``: (B, 3, H, W) float32 RGB images, normalised as ``YOLOS`` does:
  ``(pixels - pixel_mean) / pixel_std`` in 0-255 units;
- outputs ``pred_logits``: (B, K, C + 1) class logits, the last one "no object", and
  ``pred_boxes``: (B, K, 4) cx, cy, w, h normalised to [0, 1].

B, H and W are dynamic: the patch position embeddings are resized (bicubic) to the input's patch
grid inside the graph. H and W need not be multiples of the patch size: as in eager, partial
patches are dropped. To get ``YOLOS``'s detections, zero-pad the normalised images to a multiple
of ``model.size_divisibility`` and scale the boxes by the image size before padding.
``--height`` and ``--width`` only set the example input that is traced.

ONNX uses PyTorch's ``torch.export``-based exporter, which needs the ``onnx`` and ``onnxscript``
packages. TorchScript uses ``torch.jit.trace`` (deprecated by PyTorch; for LibTorch), whose trace
is checked against eager at a second batch size and patch grid.
"""
import argparse
import logging
import os

import torch

from ..engine import build_inference_model
from ..modeling import YOLOSDetector
from . import cli

__all__ = ["export_onnx", "export_torchscript", "main"]

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAMES = ["pred_logits", "pred_boxes"]


def export_onnx(detector: YOLOSDetector, images: torch.Tensor, path: str) -> None:
    """
    Write ``detector`` to ``path`` as one ONNX file (weights included) whose input ``images``
    has a dynamic batch size, height and width.

    Args:
        detector: in eval mode.
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


def export_torchscript(detector: YOLOSDetector, images: torch.Tensor, path: str) -> None:
    """
    Write ``detector`` to ``path`` traced with ``torch.jit.trace``; the traced module returns
    the same dict as :meth:`YOLOSDetector.forward`.

    Args:
        detector: in eval mode.
        images: (B, 3, H, W) example input that is traced.
    """
    batch, _, height, width = images.shape
    patch = detector.backbone.patch_size
    # jit.trace also traces `other` (another batch size and patch grid) and raises if its graph or
    # outputs differ from the example's: a trace specialised to the example's size cannot pass.
    other = torch.randn(batch + 1, 3, width + patch, height + 2 * patch, device=images.device)
    with torch.no_grad():
        traced = torch.jit.trace(detector, (images,), strict=False, check_inputs=[(images,), (other,)])
    traced.save(path)


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser, device=False)
    parser.add_argument("--output", required=True, metavar="FILE", help="file to write, e.g. yolos_ti.onnx")
    parser.add_argument("--format", choices=sorted(EXPORTERS), default="onnx", help="default: onnx")
    parser.add_argument("--height", type=int, default=512, help="example input height in pixels (default 512)")
    parser.add_argument("--width", type=int, default=512, help="example input width in pixels (default 512)")
    args = cli.parse_args(parser, argv)

    # A config mistake, an argument the model refuses (e.g. init_pe_size), weights that do not fit.
    with cli.usage_errors(parser):
        cfg = cli.load_config(args.config_file, args.opts, args.weights, device="cpu")  # the graph is device-free
        model = build_inference_model(cfg, require_weights=False)
    patch = model.detector.backbone.patch_size
    if min(args.height, args.width) < patch:
        parser.error(f"--height {args.height} --width {args.width}: each must be at least one {patch}-pixel patch")

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    EXPORTERS[args.format](model.detector, torch.randn(1, 3, args.height, args.width), args.output)
    logger.info(
        f"Wrote {args.output} ({args.format}): {INPUT_NAME} (batch, 3, height, width) -> "
        f"{', '.join(OUTPUT_NAMES)}"
    )
    return 0


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
