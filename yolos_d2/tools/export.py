"""
Export the YOLOS detector to ONNX or TorchScript, for any batch size and image size, or the whole
prediction (resize, model, post-processing) to ONNX::

    yolos-export --config-file CONFIG --output yolos.onnx [--weights WEIGHTS] \
        [--format {onnx,torchscript}] [--height H --width W] [KEY=VALUE ...]
    yolos-export --config-file CONFIG --output yolos_pipeline.onnx --pipeline [--weights WEIGHTS] \
        [--score-threshold S] [--top-k K] [--max-size PIXELS] [KEY=VALUE ...]
    yolos-export --config-file CONFIG --output yolos_int8.onnx --int8 [--pipeline] [--weights WEIGHTS]

(also ``python -m yolos_d2.tools.export``). The detector graph is ``model.detector``
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
``--height`` and ``--width`` only set the example input that is traced, from one patch to
1333 pixels (the predictor's default cap on an image's longer side).

``--pipeline`` exports :class:`~yolos_d2.export.YOLOSPipeline` instead (ONNX only): input
``image``, one (H, W, 3) uint8 image of any size in ``model.input_format``, resized as the
predictor resizes it (``--max-size`` as the demo's); outputs ``boxes`` (N, 4) XYXY in the image's
pixels, ``scores`` (N,), ``classes`` (N,) and ``det_tokens`` (N,), the detections scoring at least
``--score-threshold``, at most ``--top-k`` of them; all three fixed in the file.

``--int8`` writes an ONNX file whose matrix products with weights take int8 weights (one scale
per output channel) and quantise their inputs to uint8 as they come: onnxruntime's dynamic
quantisation, which onnxruntime runs on the CPU (see docs/deployment.md for its speed and AP).

ONNX uses PyTorch's ``torch.export``-based exporter, which needs the ``onnx`` and ``onnxscript``
packages. TorchScript uses ``torch.jit.trace`` (deprecated by PyTorch; for LibTorch), whose trace
is checked against eager at a second batch size and patch grid.

An ``--output`` that would replace the config file or the weights, and a setting out of its
range, are refused before anything is done (exit status 2). The file is written atomically: an
export that fails (e.g. a full disk) leaves no partial file and ends the command (exit status 1),
naming it.
"""
import argparse
import functools
import logging
import os
import tempfile
from typing import Callable

import torch
from detectron2.config import instantiate

from ..config import prepare_config
from ..data import DEFAULT_MAX_SIZE
from ..export import YOLOSPipeline, export_detector_onnx, export_pipeline_onnx, export_torchscript, quantize_onnx_int8
from ..export.onnx import INPUT_NAME, OUTPUT_NAMES, PIPELINE_INPUT_NAME
from ..export.pipeline import OUTPUT_NAMES as PIPELINE_OUTPUT_NAMES
from ..inference import build_inference_model
from ..inference.predictor import check_max_size
from ..modeling import check_selection
from ..utils.file_io import create_atomic
from . import cli
from .outputs import check_file_output, check_outputs, config_inputs

__all__ = ["EXPORTERS", "main"]

logger = logging.getLogger(__name__)

EXPORTERS = {"onnx": export_detector_onnx, "torchscript": export_torchscript}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser, device=False)
    parser.add_argument("--output", required=True, metavar="FILE", help="file to write, e.g. yolos_ti.onnx")
    parser.add_argument("--format", choices=sorted(EXPORTERS), default="onnx", help="default: onnx")
    parser.add_argument(
        "--height", type=cli.positive_int, default=512, help="example input height in pixels (default 512)"
    )
    parser.add_argument(
        "--width", type=cli.positive_int, default=512, help="example input width in pixels (default 512)"
    )
    parser.add_argument(
        "--pipeline", action="store_true", help="export the whole prediction: a uint8 image in, detections out (ONNX)"
    )
    parser.add_argument(
        "--score-threshold",
        type=cli.fraction,
        help="--pipeline: keep the detections scoring at least this, 0 to 1 (default 0: all)",
    )
    parser.add_argument(
        "--top-k", type=cli.positive_int, help="--pipeline: keep at most this many, the highest scoring"
    )
    cli.add_max_size_argument(parser)
    parser.set_defaults(max_size=None)  # None: not given; --pipeline then takes the predictor's default
    parser.add_argument(
        "--int8", action="store_true", help="ONNX: quantise the weights of the matrix products to int8 (onnxruntime)"
    )
    args = cli.parse_args(parser, argv)
    if not args.pipeline and any(v is not None for v in (args.score_threshold, args.top_k, args.max_size)):
        parser.error("--score-threshold, --top-k and --max-size belong to --pipeline")
    if args.pipeline and args.format != "onnx":
        parser.error("--pipeline exports ONNX only")
    if args.int8 and args.format != "onnx":
        parser.error("--int8 quantises ONNX exports only")

    # A config mistake, an argument the model refuses (e.g. init_pe_size), weights that do not
    # fit, an output that must not be written, a setting out of range.
    with cli.usage_errors(parser):
        check_selection(args.score_threshold or 0.0, args.top_k)
        cfg = prepare_config(args.config_file, args.opts, args.weights, device="cpu")  # the graph is device-free
        check_file_output(args.output)
        check_outputs([args.output], config_inputs(args.config_file, cfg))
        model = build_inference_model(cfg, require_weights=False)
        if args.pipeline:
            max_size = DEFAULT_MAX_SIZE if args.max_size is None else args.max_size
            check_max_size(max_size, model.detector.backbone.patch_size)
            augmentations = instantiate(cfg.dataloader.test.mapper.augmentations)
            pipeline = YOLOSPipeline(model, augmentations, args.score_threshold or 0.0, args.top_k, max_size)
    patch = model.detector.backbone.patch_size
    if not patch <= min(args.height, args.width) <= max(args.height, args.width) <= DEFAULT_MAX_SIZE:
        parser.error(
            f"--height {args.height} --width {args.width}: each must be from one {patch}-pixel patch "
            f"to {DEFAULT_MAX_SIZE} pixels"
        )

    if args.pipeline:
        image = torch.randint(0, 256, (args.height, args.width, 3), dtype=torch.uint8)
        export = functools.partial(export_pipeline_onnx, pipeline, image)
        inputs = f"{PIPELINE_INPUT_NAME} (height, width, 3) uint8 {model.input_format}"
        what, outputs = "onnx, whole pipeline", PIPELINE_OUTPUT_NAMES
    else:
        export = functools.partial(EXPORTERS[args.format], model.detector, torch.randn(1, 3, args.height, args.width))
        inputs, what, outputs = f"{INPUT_NAME} (batch, 3, height, width)", args.format, OUTPUT_NAMES
    if args.int8:
        export = functools.partial(_export_int8, export)
        what += ", int8 weights"
    try:
        create_atomic(args.output, export)
    except OSError as e:
        logger.error("%s", e)
        return 1
    logger.info(f"Wrote {args.output} ({what}): {inputs} -> {', '.join(outputs)}")
    return 0


def _export_int8(export: Callable[[str], None], path: str) -> None:
    """Write to ``path`` the ONNX file ``export`` writes with its matrix products' weights quantised to int8."""
    with tempfile.TemporaryDirectory(prefix="yolos_export_") as folder:
        float32_path = os.path.join(folder, "float32.onnx")
        export(float32_path)
        quantize_onnx_int8(float32_path, path)


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
