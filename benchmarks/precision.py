"""
AP and speed of a trained model run in each inference precision, on its config's test set, in
one process::

    python -m benchmarks precision --config-file configs/quickstart.py --weights output/quickstart/model_final.pth

Rows: float32; on the CPU, the detector's ONNX export run by onnxruntime in float32, int8 with
PyTorch's dynamic quantisation of the Linear layers (``--precision int8`` of the predictor and
the demo) and int8 with onnxruntime's dynamic quantisation of that export (``yolos-export
--int8``); bfloat16 autocast where the device computes it natively (else the line under the
table says why it is skipped). Each row gives AP, AP50 and AP75, their change from float32, the
largest difference of its scores from float32's over the test set, and the milliseconds of one
detector forward on the first test images in batches of ``--batch-sizes`` (timed interleaved),
with their ratio to float32's.
"""
import argparse
import contextlib
import copy
import functools
import io
import itertools
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch
from detectron2.config import instantiate
from detectron2.evaluation import inference_on_dataset
from omegaconf import DictConfig

from yolos_d2.config import prepare_config
from yolos_d2.inference import build_inference_model
from yolos_d2.export.onnx import OnnxRuntimeDetector
from yolos_d2.inference.precision import apply_precision, bf16_is_fast
from yolos_d2.modeling import YOLOS
from yolos_d2.tools import cli
from yolos_d2.utils.table import format_table
from .timing import add_repeats_argument, device_sync, time_interleaved

__all__ = ["run", "main"]


class _InPrecision(torch.nn.Module):
    """``model`` whose forwards run in ``context`` (autocast for bf16) and record the scores they return."""

    def __init__(self, model: YOLOS, context):
        super().__init__()
        self.model = model
        self.context = context
        self.scores: List[torch.Tensor] = []

    def forward(self, batched_inputs):
        with self.context():
            outputs = self.model(batched_inputs)
        self.scores += [o["instances"].scores.float().cpu() for o in outputs]
        return outputs


def _with_detector(model: YOLOS, detector: torch.nn.Module) -> _InPrecision:
    """A copy of ``model`` whose detector is ``detector`` (an :class:`OnnxRuntimeDetector`)."""
    copied = copy.deepcopy(model)
    copied.detector = detector
    return _InPrecision(copied, contextlib.nullcontext)


def precision_models(model: YOLOS, device: str) -> Dict[str, _InPrecision]:
    """The trained ``model`` in each precision this device runs (see the module description)."""
    models = {"fp32": _InPrecision(model, apply_precision(model, "fp32", device).context)}
    if device == "cpu":
        patch = model.detector.backbone.patch_size
        # The export runs any input size; a small example traces fast.
        onnx_fp32 = OnnxRuntimeDetector.export(model.detector, torch.zeros(1, 3, 4 * patch, 4 * patch))
        models["fp32, onnxruntime"] = _with_detector(model, onnx_fp32)
        torch_int8 = copy.deepcopy(model)
        models["int8, PyTorch"] = _InPrecision(torch_int8, apply_precision(torch_int8, "int8", device).context)
        models["int8, onnxruntime"] = _with_detector(model, onnx_fp32.int8())
    if bf16_is_fast(device):
        bf16 = copy.deepcopy(model)
        models["bf16"] = _InPrecision(bf16, apply_precision(bf16, "bf16", device).context)
    return models


@dataclass(frozen=True)
class PrecisionRow:
    """
    The model in one precision on the test set: AP, AP50 and AP75 (0-100), the changes of AP and
    AP50 from float32, the largest absolute difference of its scores from float32's, and per
    timed batch size, the seconds of one detector forward (a median) and their ratio to float32's.
    """

    name: str
    ap: float
    ap50: float
    ap75: float
    ap_change: float
    ap50_change: float
    score_difference: float
    forward_seconds: Dict[int, float]
    time_ratios: Dict[int, float]


@dataclass(frozen=True)
class PrecisionResult:
    """The evaluated ``dataset``, the number of ``detections`` float32 made on it, and a row per precision."""

    dataset: str
    detections: int
    rows: List[PrecisionRow]


def _detector_forward(wrapped: _InPrecision, images: torch.Tensor) -> None:
    """``wrapped``'s detector on ``images`` (B, 3, H, W), in its precision's context."""
    with wrapped.context():
        wrapped.model.detector(images)


def time_forwards(
    models: Dict[str, _InPrecision], inputs: List[dict], batch_sizes: Sequence[int], repeats: int, device: str
) -> Dict[str, Dict[int, float]]:
    """
    Median seconds of each model's detector forward on the first ``batch_size`` of ``inputs``
    (detectron2 dicts, cycled where fewer), per batch size, the models timed interleaved on ``device``.
    """
    seconds: Dict[str, Dict[int, float]] = {name: {} for name in models}
    for batch_size in batch_sizes:
        batch = list(itertools.islice(itertools.cycle(inputs), batch_size))
        images = models["fp32"].model.preprocess_image(batch).tensor
        forwards = {name: functools.partial(_detector_forward, wrapped, images) for name, wrapped in models.items()}
        with torch.inference_mode():
            times = time_interleaved(forwards, repeats=repeats, warmup=2, sync=device_sync(device))
            for name, median in times.items():
                seconds[name][batch_size] = median
    return seconds


def run(cfg: DictConfig, model: YOLOS, batch_sizes: Sequence[int] = (1, 8), repeats: int = 20) -> PrecisionResult:
    """
    Evaluate the trained ``model`` on the config's test set in each of :func:`precision_models`,
    and time their forwards on its first images in batches of ``batch_sizes`` over ``repeats`` rounds.
    """
    data_loader = instantiate(cfg.dataloader.test)
    # The ONNX exporter's progress and each evaluation's pycocotools summary print to stdout: the
    # benchmark's table gives what it measures from them.
    with contextlib.redirect_stdout(io.StringIO()):
        models = precision_models(model, cfg.train.device)
        results = {
            name: inference_on_dataset(wrapped, data_loader, instantiate(cfg.dataloader.evaluator))["bbox"]
            for name, wrapped in models.items()
        }
    first_inputs = list(itertools.chain.from_iterable(itertools.islice(data_loader, max(batch_sizes))))
    seconds = time_forwards(models, first_inputs, batch_sizes, repeats, cfg.train.device)
    reference = results["fp32"]
    reference_scores = torch.cat(models["fp32"].scores)
    rows = [
        PrecisionRow(
            name,
            bbox["AP"],
            bbox["AP50"],
            bbox["AP75"],
            bbox["AP"] - reference["AP"],
            bbox["AP50"] - reference["AP50"],
            (torch.cat(models[name].scores) - reference_scores).abs().max().item(),
            seconds[name],
            {batch_size: seconds[name][batch_size] / seconds["fp32"][batch_size] for batch_size in batch_sizes},
        )
        for name, bbox in results.items()
    ]
    return PrecisionResult(cfg.dataloader.test.dataset.names, len(reference_scores), rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks precision", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_config_arguments(parser)
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        type=cli.positive_int,
        default=[1, 8],
        metavar="N",
        help="the timed batches: the first N test images each, as one (padded) batch (default 1 8)",
    )
    add_repeats_argument(parser, default=20)
    args = cli.parse_args(parser, argv)
    with cli.usage_errors(parser):
        cfg = prepare_config(args.config_file, args.opts, args.weights, args.device)
        model = build_inference_model(cfg)
    result = run(cfg, model, args.batch_sizes, args.repeats)

    if "bf16" not in {row.name for row in result.rows}:
        print(f"bf16 skipped: {cfg.train.device} does not compute bfloat16 natively (no AVX512-BF16 or AMX on a CPU)")
    rows = [
        [
            row.name,
            *(f"{ap:.2f}" for ap in (row.ap, row.ap50, row.ap75)),
            *(f"{change:+.2f}" for change in (row.ap_change, row.ap50_change)),
            f"{row.score_difference:.1e}",
            *itertools.chain.from_iterable(
                (f"{row.forward_seconds[batch_size] * 1e3:.2f}", f"{row.time_ratios[batch_size]:.2f}")
                for batch_size in args.batch_sizes
            ),
        ]
        for row in result.rows
    ]
    print(f"{result.dataset}: {result.detections} detections, {torch.get_num_threads()} threads")
    header = ["precision", "AP", "AP50", "AP75", "AP change", "AP50 change", "max score difference"]
    for batch_size in args.batch_sizes:
        header += [f"ms, batch {batch_size}", f"time / fp32, batch {batch_size}"]
    print(format_table(header, rows))
