"""
Speed and peak memory of one training step (forward, matching, losses, backward, gradient
clipping, AdamW) of :class:`YOLOSTrainer`, with and without activation checkpointing::

    python -m benchmarks training [--config-file configs/yolos_ti.py] [--batch 2] [--size 512x688]

Steps per second are timed interleaved in one process (the same model switches
``use_act_checkpoint`` between steps), and with them the update of an EMA of the weights
(``train.ema.enabled``, :class:`~yolos_d2.engine.WeightEMA`), which runs after each step. Peak memory is that of the tensors a step allocates and holds
at once (activations, gradients, temporaries; not the model and optimizer state that exist before
it), from ``torch.cuda.max_memory_allocated`` on CUDA and by following ATen's allocations on CPU.
"""
import argparse
import itertools
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from omegaconf import DictConfig

from yolos_d2.config import AMP_DTYPES, prepare_config
from yolos_d2.engine import WeightEMA, YOLOSTrainer, unwrap_model
from yolos_d2.tools import cli
from yolos_d2.tools.train import wrap_ddp
from .memory import peak_allocated_bytes
from yolos_d2.utils.table import format_table
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
        amp_dtype=cfg.train.amp.dtype,
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
    amp_dtype = AMP_DTYPES.get(cfg.train.amp.dtype)
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


def run(cfg: DictConfig, batch: int, size: Tuple[int, int], repeats: int) -> TrainingResult:
    """
    Time steps of the config's model and optimizer on ``batch`` synthetic images of ``size`` (H, W)
    with activation checkpointing off and on, and an EMA update, interleaved over ``repeats``
    rounds; then measure each step's peak memory.
    """
    trainer = build_trainer(cfg, batch, size)
    ema = WeightEMA(trainer.model, decay=0.999)
    times, memory = measure_steps(checkpointing_steps(trainer), cfg.train.device, repeats, others={"ema": ema.update})
    ema_seconds = times.pop("ema")
    memory_ratio = {name: peak / memory["off"] for name, peak in memory.items()}
    return TrainingResult(
        steps=timings(times, "off", StepTiming, peak_bytes=memory, memory_ratio=memory_ratio),
        ema=Timing("ema", ema_seconds, ema_seconds / times["off"]),
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_step_arguments(parser, repeats=5)
    args, cfg = parse_step_arguments(parser, argv)
    result = run(cfg, args.batch, args.size, args.repeats)

    print(describe_step(args.config_file, args.batch, args.size, cfg))
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
    header = ["activation checkpointing", "s/step", "steps/s", "time ratio", "peak MiB", "memory ratio"]
    print(format_table(header, rows))
    print(f"EMA of the weights: {result.ema.seconds * 1e3:.1f} ms per update, {result.ema.ratio:.3f} of a step")
