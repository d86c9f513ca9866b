"""
Speed and peak memory of one training step (forward, matching, losses, backward, gradient
clipping, AdamW) of :class:`YOLOSTrainer`, in each precision the device runs, with and without
activation checkpointing::

    python -m benchmarks training [--config-file configs/yolos_ti.py] [--batch 2] [--size 512x688]

The precisions are float32, bfloat16 autocast (``train.amp.dtype=bfloat16``) where the device
computes it natively, and float16 autocast on CUDA; one trainer each, from the same initial
weights. Steps per second are timed interleaved in one process (each model switches
``use_act_checkpoint`` between steps), and with them the update of an EMA of the weights
(``train.ema.enabled``, :class:`~yolos_d2.engine.WeightEMA`), which runs after each step. Peak
memory is that of the tensors a step allocates and holds at once (activations, gradients,
temporaries; not the model and optimizer state that exist before it), from
``torch.cuda.max_memory_allocated`` on CUDA and by following ATen's allocations on CPU.
"""
import argparse
import copy
import itertools
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from omegaconf import DictConfig

from yolos_d2.config import prepare_config
from yolos_d2.engine.amp import resolve_amp_dtype
from yolos_d2.engine import WeightEMA, YOLOSTrainer, unwrap_model
from yolos_d2.tools import cli
from yolos_d2.tools.train import wrap_ddp
from .memory import peak_allocated_bytes
from yolos_d2.utils.table import format_table
from .inference import benchmark_dtypes
from .timing import Timing, add_repeats_argument, describe_device, device_sync, time_interleaved, timings


def synthetic_batch(batch: int, size: Tuple[int, int], num_classes: int, boxes_per_image: int = 7) -> List[Dict]:
    """``batch`` detectron2 inputs: random uint8 (3, H, W) images with random XYXY boxes and classes."""
    generator = torch.Generator().manual_seed(0)
    height, width = size
    inputs = []
    for _ in range(batch):
        corners = torch.rand(boxes_per_image, 2, 2, generator=generator) * torch.tensor([width, height])
        instances = Instances(size)
        instances.gt_boxes = Boxes(torch.cat([corners.amin(1), corners.amax(1) + 1], dim=1))
        instances.gt_classes = torch.randint(num_classes, (boxes_per_image,), generator=generator)
        image = torch.randint(256, (3, height, width), dtype=torch.uint8, generator=generator)
        inputs.append({"image": image, "instances": instances})
    return inputs


def build_trainer(cfg, batch: int, size: Tuple[int, int], ddp: bool = False) -> YOLOSTrainer:
    """
    A :class:`YOLOSTrainer` of the config's model and optimizer on ``cfg.train.device``, fed
    ``batch`` synthetic images of ``size`` (H, W) at every step; with ``ddp``, the model wrapped
    in ``DistributedDataParallel`` as training wraps it (call it in each process of a group).
    """
    torch.manual_seed(0)
    model = instantiate(cfg.model).to(cfg.train.device).train()
    cfg.optimizer.params.model = model
    data = synthetic_batch(batch, size, cfg.model.detector.num_classes)
    trainer = YOLOSTrainer(
        wrap_ddp(cfg, model) if ddp else model,
        lambda start_iter, seed: itertools.repeat(data),
        instantiate(cfg.optimizer),
        amp_dtype=resolve_amp_dtype(cfg.train.amp.dtype, cfg.train.device)[0],
        clip_grad_norm=cfg.train.clip_grad_norm,
        seed=0,
    )
    # Training for no iteration builds the data iterator (from iteration 0) and runs no step.
    trainer.train(0, 0)
    return trainer


def add_step_arguments(
    parser: argparse.ArgumentParser,
    repeats: int,
    config_file: str = "configs/yolos_ti.py",
    batch: int = 2,
    size: Tuple[int, int] = (512, 688),
) -> None:
    """
    The arguments of a benchmark of training steps, with these defaults: ``--config-file``,
    ``--device``, ``--batch``, ``--size`` (H, W) and ``--repeats``; KEY=VALUE overrides.
    """
    config_help = f"a LazyConfig whose model and optimizer are timed (default {config_file})"
    cli.add_config_arguments(parser, required=False, config_help=config_help, weights=False)
    parser.set_defaults(config_file=config_file)
    parser.add_argument(
        "--batch", type=cli.positive_int, default=batch, metavar="N", help=f"images per training step (default {batch})"
    )
    parser.add_argument(
        "--size",
        type=cli.image_size,
        default=size,
        metavar="HxW",
        help=f"height and width of the synthetic images in pixels (default {size[0]}x{size[1]})",
    )
    add_repeats_argument(parser, repeats)


def parse_step_arguments(parser: argparse.ArgumentParser, argv) -> Tuple[argparse.Namespace, DictConfig]:
    """The arguments of :func:`add_step_arguments` and the checked config."""
    args = cli.parse_args(parser, argv)
    with cli.usage_errors(parser):
        return args, prepare_config(args.config_file, args.opts, device=args.device)


def describe_step(config_file: str, batch: int, size: Tuple[int, int], cfg: DictConfig) -> str:
    """The line above a table of training steps: config, batch, size, device (:func:`describe_device`), autocast."""
    device = cfg.train.device
    amp_dtype = resolve_amp_dtype(cfg.train.amp.dtype, device)[0]
    return f"{config_file}, batch {batch} at {size[0]}x{size[1]}, {device} ({describe_device(device)}), amp {amp_dtype}"


@dataclass(frozen=True)
class StepTiming(Timing):
    """
    A training step with activation checkpointing "off" or "on"; ``ratio`` against "off". Its
    ``peak_bytes``: the most bytes of tensors it held at once, and their ``memory_ratio`` to "off"'s.
    """

    peak_bytes: int
    memory_ratio: float


@dataclass(frozen=True)
class TrainingResult:
    """The steps without and with activation checkpointing, and the EMA update (``ratio`` against a step "off")."""

    steps: List[StepTiming]
    ema: Timing


# Activation checkpointing of the backbone (its use_act_checkpoint) in the rows of the tables.
CHECKPOINTING = {"off": False, "on": True}


def checkpointing_steps(trainer: YOLOSTrainer) -> Dict[str, Callable[[], None]]:
    """A training step of ``trainer`` with activation checkpointing "off" and one with it "on"."""
    backbone = unwrap_model(trainer.model).detector.backbone

    def step(use_act_checkpoint: bool):
        backbone.use_act_checkpoint = use_act_checkpoint
        trainer.run_step()

    return {name: partial(step, setting) for name, setting in CHECKPOINTING.items()}


def measure_steps(
    steps: Dict[str, Callable[[], None]],
    device: str,
    repeats: int,
    warmup: int = 1,
    others: Optional[Dict[str, Callable[[], object]]] = None,
) -> Tuple[Dict[str, float], Dict[str, int]]:
    """
    The seconds per call of each of ``steps`` (training steps) and ``others``, timed interleaved
    over ``repeats`` rounds after ``warmup``; then the peak bytes of one call of each step
    (:func:`peak_allocated_bytes`). Returns (seconds, peak bytes) by name.
    """
    with EventStorage(0):  # where the steps write their losses
        times = time_interleaved({**steps, **(others or {})}, repeats=repeats, warmup=warmup, sync=device_sync(device))
        memory = {name: peak_allocated_bytes(step, device) for name, step in steps.items()}
    return times, memory


# train.amp.dtype of each precision of the tables.
AMP_SETTINGS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def step_name(dtype: str, checkpointing: str) -> str:
    """The name of a training step in ``dtype`` with activation checkpointing "off" or "on"."""
    return f"{dtype}, checkpointing {checkpointing}"


def precision_trainers(
    cfg: DictConfig, dtypes: List[str], batch: int, size: Tuple[int, int]
) -> Dict[str, YOLOSTrainer]:
    """A :func:`build_trainer` trainer for each of ``dtypes`` (keys of :data:`AMP_SETTINGS`), from the same weights."""
    trainers = {}
    for dtype in dtypes:
        dtype_cfg = copy.deepcopy(cfg)
        dtype_cfg.train.amp.dtype = AMP_SETTINGS[dtype]
        trainers[dtype] = build_trainer(dtype_cfg, batch, size)
    return trainers


def precision_steps(trainers: Dict[str, YOLOSTrainer]) -> Dict[str, Callable[[], None]]:
    """A step of each of ``trainers`` (by precision) without and with checkpointing, named by :func:`step_name`."""
    return {
        step_name(dtype, checkpointing): step
        for dtype, trainer in trainers.items()
        for checkpointing, step in checkpointing_steps(trainer).items()
    }


def run(cfg: DictConfig, batch: int, size: Tuple[int, int], repeats: int) -> TrainingResult:
    """
    Time steps of the config's model and optimizer on ``batch`` synthetic images of ``size`` (H, W)
    in each precision the device runs (:func:`benchmark_dtypes`), with activation checkpointing
    off and on, and an EMA update, interleaved over ``repeats`` rounds; then measure each step's
    peak memory. Ratios are against float32 without checkpointing.
    """
    trainers = precision_trainers(cfg, benchmark_dtypes(cfg.train.device), batch, size)
    ema = WeightEMA(trainers["fp32"].model, decay=0.999)
    times, memory = measure_steps(precision_steps(trainers), cfg.train.device, repeats, others={"ema": ema.update})
    ema_seconds = times.pop("ema")
    reference = step_name("fp32", "off")
    memory_ratio = {name: peak / memory[reference] for name, peak in memory.items()}
    return TrainingResult(
        steps=timings(times, reference, StepTiming, peak_bytes=memory, memory_ratio=memory_ratio),
        ema=Timing("ema", ema_seconds, ema_seconds / times[reference]),
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_step_arguments(parser, repeats=5)
    args, cfg = parse_step_arguments(parser, argv)
    if any(override.lstrip("+").split("=")[0] == "train.amp.dtype" for override in args.opts):
        parser.error("train.amp.dtype: the benchmark times every precision the device runs, each in a row")
    result = run(cfg, args.batch, args.size, args.repeats)

    device = cfg.train.device
    height, width = args.size
    print(f"{args.config_file}, batch {args.batch} at {height}x{width}, {device} ({describe_device(device)})")
    rows = [
        [
            step.name,
            f"{step.seconds:.3f}",
            f"{1 / step.seconds:.2f}",
            f"{step.ratio:.2f}",
            f"{step.peak_bytes / 2**20:.0f}",
            f"{step.memory_ratio:.2f}",
        ]
        for step in result.steps
    ]
    header = ["precision, activation checkpointing", "s/step", "steps/s", "time ratio", "peak MiB", "memory ratio"]
    print(format_table(header, rows))
    print(f"EMA of the weights: {result.ema.seconds * 1e3:.1f} ms per update, {result.ema.ratio:.3f} of a step")
