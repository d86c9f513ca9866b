"""
AP of a trained model run in each inference precision, on its config's test set, in one process::

    python -m benchmarks precision --config-file configs/quickstart.py --weights output/quickstart/model_final.pth

Rows: float32; int8 with PyTorch's dynamic quantisation of the Linear layers (``--precision int8``
of the predictor and the demo); int8 with onnxruntime's dynamic quantisation of the detector's
ONNX export (``yolos-export --int8``); bfloat16 autocast where the device computes it natively
(else the line under the table says why it is skipped). Each row gives AP, AP50 and AP75, their
change from float32, the largest difference of its scores from float32's over the test set, and
the seconds the evaluation took (the model's forwards and the COCO evaluation).
"""
import argparse
import contextlib
import copy
import io
import time
from dataclasses import dataclass
from typing import Dict, List

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


def precision_models(model: YOLOS, device: str) -> Dict[str, _InPrecision]:
    """The trained ``model`` in each precision this device runs (see the module description)."""
    models = {"fp32": _InPrecision(model, apply_precision(model, "fp32", device).context)}
    if device == "cpu":
        torch_int8 = copy.deepcopy(model)
        models["int8, PyTorch"] = _InPrecision(torch_int8, apply_precision(torch_int8, "int8", device).context)
        onnx_int8 = copy.deepcopy(model)
        patch = model.detector.backbone.patch_size
        # The export runs any input size; a small example traces fast.
        onnx_int8.detector = OnnxRuntimeDetector.export(model.detector, torch.zeros(1, 3, 4 * patch, 4 * patch)).int8()
        models["int8, onnxruntime"] = _InPrecision(onnx_int8, contextlib.nullcontext)
    if bf16_is_fast(device):
        bf16 = copy.deepcopy(model)
        models["bf16"] = _InPrecision(bf16, apply_precision(bf16, "bf16", device).context)
    return models


@dataclass(frozen=True)
class PrecisionRow:
    """
    The model in one precision on the test set: AP, AP50 and AP75 (0-100), the changes of AP and
    AP50 from float32, the largest absolute difference of its scores from float32's, and the
    seconds of its evaluation (forwards and COCO evaluation).
    """

    name: str
    ap: float
    ap50: float
    ap75: float
    ap_change: float
    ap50_change: float
    score_difference: float
    seconds: float


@dataclass(frozen=True)
class PrecisionResult:
    """The evaluated ``dataset``, the number of ``detections`` float32 made on it, and a row per precision."""

    dataset: str
    detections: int
    rows: List[PrecisionRow]


def run(cfg: DictConfig, model: YOLOS) -> PrecisionResult:
    """Evaluate the trained ``model`` on the config's test set in each of :func:`precision_models`."""
    data_loader = instantiate(cfg.dataloader.test)
    # The ONNX exporter's progress and each evaluation's pycocotools summary print to stdout: the
    # benchmark's table gives what it measures from them.
    with contextlib.redirect_stdout(io.StringIO()):
        models = precision_models(model, cfg.train.device)
        results = {}
        for name, wrapped in models.items():
            start = time.perf_counter()
            results[name] = inference_on_dataset(wrapped, data_loader, instantiate(cfg.dataloader.evaluator))["bbox"]
            results[name]["seconds"] = time.perf_counter() - start
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
            bbox["seconds"],
        )
        for name, bbox in results.items()
    ]
    return PrecisionResult(cfg.dataloader.test.dataset.names, len(reference_scores), rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks precision", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_config_arguments(parser)
    args = cli.parse_args(parser, argv)
    with cli.usage_errors(parser):
        cfg = prepare_config(args.config_file, args.opts, args.weights, args.device)
        model = build_inference_model(cfg)
    result = run(cfg, model)

    if "bf16" not in {row.name for row in result.rows}:
        print(f"bf16 skipped: {cfg.train.device} does not compute bfloat16 natively (no AVX512-BF16 or AMX on a CPU)")
    rows = [
        [
            row.name,
            *(f"{ap:.2f}" for ap in (row.ap, row.ap50, row.ap75)),
            *(f"{change:+.2f}" for change in (row.ap_change, row.ap50_change)),
            f"{row.score_difference:.1e}",
            f"{row.seconds:.1f}",
        ]
        for row in result.rows
    ]
    print(f"{result.dataset}: {result.detections} detections, {torch.get_num_threads()} threads")
    header = ["precision", "AP", "AP50", "AP75", "AP change", "AP50 change", "max score difference", "seconds"]
    print(format_table(header, rows))
