"""
A trained YOLOS evaluated at several input sizes, in each precision the device computes natively:
the AP, AP50 and milliseconds per image of each, to choose the size and precision to deploy.
YOLOS interpolates its position embeddings to the input's size, so one trained model runs at any.
"""
import copy
import dataclasses
import logging
import statistics
import time
from typing import List, Sequence, Tuple

import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.evaluation import inference_on_dataset
from omegaconf import DictConfig, ListConfig
from torch import nn

from ..data import detr_test_augmentations
from .precision import PRECISIONS, InferencePrecision, apply_precision, bf16_is_fast

__all__ = [
    "EVAL_SIZE_KEY",
    "SweepPoint",
    "TimedForward",
    "has_eval_size",
    "measure",
    "native_precisions",
    "run_sweep",
    "with_eval_size",
]

logger = logging.getLogger(__name__)

# The config key of the test-time shorter side, in configs whose test mapper resizes with detr_test_augmentations.
EVAL_SIZE_KEY = "dataloader.test.mapper.augmentations.eval_size"

# Forwards of each run that are not timed: the first ones at a new input size allocate memory
# and choose kernels. As detectron2's inference_on_dataset, which logs its own timing after 5.
WARMUP_FORWARDS = 5


@dataclasses.dataclass
class SweepPoint:
    """
    One evaluation of the sweep: ``eval_size`` (the images' shorter side, pixels), ``precision``,
    ``ap`` and ``ap50`` (as the evaluator gives them: COCO's in percent) and ``ms_per_image``
    (the median time of the model's forward on one image, milliseconds).
    """

    eval_size: int
    precision: str
    ap: float
    ap50: float
    ms_per_image: float


def native_precisions(device: str) -> List[str]:
    """
    The precisions ``device`` computes natively, in the order of :data:`~yolos_d2.inference.precision.PRECISIONS`:
    fp32; bf16 where :func:`~yolos_d2.inference.precision.bf16_is_fast`; int8 on the CPU.
    """
    native = {"fp32": True, "bf16": bf16_is_fast(device), "int8": torch.device(device).type == "cpu"}
    return [precision for precision in PRECISIONS if native[precision]]


def has_eval_size(cfg: DictConfig) -> bool:
    """Whether the config's test mapper resizes with ``detr_test_augmentations``, whose :data:`EVAL_SIZE_KEY` it has."""
    augmentations = cfg.dataloader.test.mapper.augmentations
    return isinstance(augmentations, DictConfig) and "eval_size" in augmentations


def with_eval_size(cfg: DictConfig, eval_size: int) -> DictConfig:
    """
    A copy of ``cfg`` whose test loader gives one image at a time, resized by
    ``detr_test_augmentations(eval_size)``: the shorter side to ``eval_size`` pixels, the longer to
    at most ``eval_size * 1333 // 800``, each floored to whole patches. The config's own
    ``eval_size`` is changed where it has one (:func:`has_eval_size`); a config without test
    augmentations (whose images keep their size, as the quick start's) gets that resize.

    Raises:
        ValueError for other test augmentations, or an ``eval_size`` below the model's patch size.
    """
    patch_size = cfg.model.detector.backbone.patch_size
    if eval_size < patch_size:
        raise ValueError(f"eval size {eval_size} is below the model's patch size, {patch_size} pixels")
    augmentations = cfg.dataloader.test.mapper.augmentations
    no_resize = isinstance(augmentations, ListConfig) and len(augmentations) == 0
    if not (has_eval_size(cfg) or no_resize):
        raise ValueError(
            "dataloader.test.mapper.augmentations must be detr_test_augmentations (its eval_size is set) or none "
            f"(the resize is added) to evaluate at other sizes; got {augmentations}"
        )
    cfg = copy.deepcopy(cfg)
    if no_resize:
        cfg.dataloader.test.mapper.augmentations = L(detr_test_augmentations)(
            eval_size=eval_size, size_multiple=patch_size
        )
    else:
        cfg.dataloader.test.mapper.augmentations.eval_size = eval_size
    if "batch_size" in cfg.dataloader.test:
        cfg.dataloader.test.batch_size = 1
    return cfg


class TimedForward(nn.Module):
    """
    ``model`` run in ``precision``'s context, each forward timed (the device synchronised before
    and after): ``seconds_per_image`` holds the time of each forward after the first ``warmup``,
    divided by its number of images.
    """

    def __init__(self, model: nn.Module, precision: InferencePrecision, warmup: int):
        super().__init__()
        self.model = model
        self.precision = precision
        self.warmup = warmup
        self.forwards = 0
        self.seconds_per_image: List[float] = []

    def forward(self, batched_inputs: List[dict]):
        device = next(self.model.parameters()).device
        _synchronize(device)
        start = time.perf_counter()
        with self.precision.context():
            outputs = self.model(batched_inputs)
        _synchronize(device)
        seconds = time.perf_counter() - start
        self.forwards += 1
        if self.forwards > self.warmup:
            self.seconds_per_image.append(seconds / len(batched_inputs))
        return outputs


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg: DictConfig, model: nn.Module, precision: InferencePrecision, evaluator) -> Tuple[float, float, float]:
    """
    Evaluate ``model`` (in eval mode, prepared for ``precision``) on ``cfg.dataloader.test`` with
    ``evaluator`` by detectron2's ``inference_on_dataset``, timing its forwards in the same run
    (:class:`TimedForward`, the first :data:`WARMUP_FORWARDS` untimed while others follow).

    Returns:
        AP, AP50 (the evaluator's "bbox" results) and the median of the timed forwards'
        milliseconds per image: unlike the mean, it holds on a machine busy with other work.

    Raises:
        ValueError if the evaluator gives no "bbox" AP and AP50.
    """
    data_loader = instantiate(cfg.dataloader.test)
    timed = TimedForward(model, precision, warmup=min(WARMUP_FORWARDS, len(data_loader) - 1))
    results = inference_on_dataset(timed, data_loader, evaluator)
    boxes = results.get("bbox") if isinstance(results, dict) else None
    if not isinstance(boxes, dict) or not {"AP", "AP50"} <= boxes.keys():
        raise ValueError(f"dataloader.evaluator ({type(evaluator).__name__}) gave no bbox AP and AP50: {results}")
    return boxes["AP"], boxes["AP50"], 1000 * statistics.median(timed.seconds_per_image)


def run_sweep(
    cfg: DictConfig, model: nn.Module, eval_sizes: Sequence[int], precisions: Sequence[str]
) -> List[SweepPoint]:
    """
    Evaluate ``model`` at each of ``eval_sizes`` (:func:`with_eval_size`) in each of
    ``precisions`` (:func:`~yolos_d2.inference.precision.apply_precision`, on a copy of
    ``model`` per precision), with the config's evaluator (``dataloader.evaluator``).

    Args:
        cfg: a checked config (:func:`yolos_d2.config.prepare_config`).
        model: ``cfg``'s model with its weights, in eval mode on ``cfg.train.device``
            (:func:`~yolos_d2.inference.build_inference_model`); not changed.

    Returns:
        one point per precision and size, in that order.

    Raises:
        ValueError, before the first evaluation, for a size or test augmentations
        :func:`with_eval_size` refuses.
    """
    configs = [with_eval_size(cfg, size) for size in eval_sizes]
    evaluator = instantiate(cfg.dataloader.evaluator)
    points = []
    for precision in precisions:
        prepared = copy.deepcopy(model)
        in_effect = apply_precision(prepared, precision, cfg.train.device)
        for size, size_cfg in zip(eval_sizes, configs):
            ap, ap50, milliseconds = measure(size_cfg, prepared, in_effect, evaluator)
            points.append(SweepPoint(size, in_effect.name, ap, ap50, milliseconds))
            logger.info(f"Eval size {size}, {in_effect.name}: AP {ap:.2f}, AP50 {ap50:.2f}, {milliseconds:.2f} ms")
    return points
