"""
The whole-pipeline ONNX export (``yolos-export --pipeline``) against the Python predictor, on the
same random weights, in one process::

    python -m benchmarks onnx-pipeline [--config-file configs/yolos_ti.py] [--time-size 480x640] [KEY=VALUE ...]

Agreement: for images of ``--sizes`` (smooth random pictures; wide, tall, enlarged and shrunk),
each of the predictor's ``--top-n`` highest-scoring detections against onnxruntime's detection of
the same ``[DET]`` token: the largest score and box differences (pixels of the input image), and
the same over every token. Time: ``YOLOSPredictor`` (PIL resize, PyTorch) and onnxruntime
(CPUExecutionProvider, its default threads) on one image of ``--time-size``, timed interleaved.
"""
import argparse
import os
import tempfile
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import onnxruntime
import torch
from detectron2.config import instantiate
from PIL import Image

from yolos_d2.config import load_config
from yolos_d2.export import YOLOSPipeline
from yolos_d2.inference import YOLOSPredictor
from yolos_d2.tools import cli
from yolos_d2.export.onnx import PIPELINE_INPUT_NAME
from yolos_d2.export import export_pipeline_onnx
from .batch_prediction import add_random_model_config_argument, random_predictor
from yolos_d2.utils.table import format_table
from .timing import Timing, add_repeats_argument, time_interleaved, timings

__all__ = ["smooth_image", "run", "main"]

DEFAULT_SIZES = [(480, 640), (640, 480), (300, 1000), (1000, 300), (512, 512), (120, 160), (1500, 2000)]
PREDICTOR = "YOLOSPredictor (PIL, PyTorch)"  # the timed predictor's row


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB: random colours on an 8-pixel grid, bicubically interpolated."""
    coarse = np.random.default_rng(seed).integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), np.uint8)
    return np.array(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))


def _differences(expected, outputs, top_n: int) -> Tuple[float, float, float, float]:
    """
    Largest score and box differences of the predictor's detections ``expected`` from the
    pipeline's ``outputs`` (boxes, scores, classes, det_tokens) of the same token: over its
    ``top_n`` highest scoring, then over all.
    """
    boxes, scores, _, tokens = outputs
    row = {token: i for i, token in enumerate(tokens.tolist())}
    matched = [row[token] for token in expected.det_tokens.tolist()]
    score = np.abs(scores[matched] - expected.scores.numpy())
    box = np.abs(boxes[matched] - expected.pred_boxes.tensor.numpy()).max(axis=1)
    top = expected.scores.argsort(descending=True)[:top_n].numpy()
    return score[top].max(), box[top].max(), score.max(), box.max()


@dataclass(frozen=True)
class AgreementRow:
    """
    An image of size ``image`` (H, W) resized to ``resized``: the largest differences of the
    pipeline's scores and boxes (pixels) from the predictor's over its ``top_n`` detections, then all.
    """

    image: Tuple[int, int]
    resized: Tuple[int, int]
    top_score_difference: float
    top_box_difference: float
    score_difference: float
    box_difference: float


@dataclass(frozen=True)
class OnnxPipelineResult:
    """A row per compared image, and the timings of the predictor and the pipeline (``ratio`` against the predictor)."""

    agreement: List[AgreementRow]
    timings: List[Timing]


def run(
    predictor: YOLOSPredictor,
    pipeline: YOLOSPipeline,
    sizes: Sequence[Tuple[int, int]],
    top_n: int,
    time_size: Tuple[int, int],
    repeats: int,
) -> OnnxPipelineResult:
    """
    Export ``pipeline`` (of ``predictor``'s model) to ONNX, compare it with ``predictor`` on smooth
    images of ``sizes`` (H, W), and time both on one image of ``time_size`` over ``repeats`` rounds.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "pipeline.onnx")
        export_pipeline_onnx(pipeline, torch.randint(0, 256, (480, 640, 3), dtype=torch.uint8), path)
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    agreement = []
    for seed, (height, width) in enumerate(sizes):
        image = smooth_image(height, width, seed)
        outputs = session.run(None, {PIPELINE_INPUT_NAME: image})
        differences = _differences(predictor(image), outputs, top_n)
        resized = predictor.resize(image).shape[:2]
        agreement.append(AgreementRow((height, width), resized, *(float(d) for d in differences)))

    image = smooth_image(*time_size, seed=0)
    times = time_interleaved(
        {
            PREDICTOR: lambda: predictor(image),
            "onnxruntime pipeline": lambda: session.run(None, {PIPELINE_INPUT_NAME: image}),
        },
        repeats=repeats,
        warmup=2,
    )
    return OnnxPipelineResult(agreement, timings(times, PREDICTOR))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks onnx-pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_random_model_config_argument(parser)
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=cli.image_size,
        default=DEFAULT_SIZES,
        metavar="HxW",
        help="the compared images' heights and widths in pixels, a row each "
        f"(default: {len(DEFAULT_SIZES)} sizes, wide, tall, enlarged and shrunk)",
    )
    parser.add_argument(
        "--top-n",
        type=cli.positive_int,
        default=10,
        metavar="N",
        help="the predictor's highest-scoring detections compared first (default 10)",
    )
    parser.add_argument(
        "--time-size",
        type=cli.image_size,
        default=(480, 640),
        metavar="HxW",
        help="the timed image's height and width in pixels (default 480x640)",
    )
    add_repeats_argument(parser, default=10)
    args = cli.parse_args(parser, argv)
    with cli.usage_errors(parser):
        cfg = load_config(args.config_file, args.opts)
        predictor = random_predictor(cfg)
        pipeline = YOLOSPipeline(predictor.model, instantiate(cfg.dataloader.test.mapper.augmentations))
    result = run(predictor, pipeline, args.sizes, args.top_n, args.time_size, args.repeats)

    print(f"{args.config_file}, random weights: the pipeline's detections against the predictor's, by [DET] token")
    top = f"top {args.top_n}"
    header = ["image", "resized", f"score diff, {top}", f"box diff px, {top}", "score diff, all", "box diff px, all"]
    rows = [
        [
            "x".join(map(str, row.image)),
            "x".join(map(str, row.resized)),
            f"{row.top_score_difference:.1e}",
            f"{row.top_box_difference:.1e}",
            f"{row.score_difference:.1e}",
            f"{row.box_difference:.1e}",
        ]
        for row in result.agreement
    ]
    print(format_table(header, rows))
    print(
        f"One {args.time_size[0]}x{args.time_size[1]} image, {os.cpu_count()} CPUs: torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}"
    )
    rows = [[row.name, f"{row.seconds * 1e3:.0f}", f"{row.ratio:.2f}"] for row in result.timings]
    print(format_table(["", "ms per image", "time / predictor's"], rows))
