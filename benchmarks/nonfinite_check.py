"""
What the check for infinite or NaN predictions (run by :class:`SetCriterion` before matching)
costs, as a share of a training step of :class:`YOLOSTrainer`::

    python -m benchmarks nonfinite-check [--config-file configs/yolos_ti.py] [--batch 2] [--size 512x688]

Timed interleaved in one process: the check alone on a step's predictions, a whole training step
(which runs the check), and the same step with the check replaced by nothing. The check's share
is its time over the step's; the difference of the two steps is printed too, but on a busy
machine it is within the noise of the step times.
"""
import argparse
from typing import List, Tuple
from unittest import mock

import torch
from detectron2.utils.events import EventStorage
from omegaconf import DictConfig

from yolos_d2.modeling import criterion
from yolos_d2.utils.table import format_table
from .timing import Timing, device_sync, time_interleaved, timings
from .training import add_step_arguments, build_trainer, describe_step, parse_step_arguments, synthetic_batch

__all__ = ["run", "main"]


def run(cfg: DictConfig, batch: int, size: Tuple[int, int], repeats: int) -> List[Timing]:
    """
    "check alone", "training step" and "step without check", timed interleaved over ``repeats``
    rounds on ``batch`` synthetic images of ``size`` (H, W); ``ratio`` against the training step.
    """
    trainer = build_trainer(cfg, batch, size)
    model = trainer.model
    with torch.no_grad():  # the predictions of the step's batch
        inputs = synthetic_batch(batch, size, model.criterion.num_classes)
        outputs = model.detector(model.preprocess_image(inputs).tensor)

    def step_without_check():
        with mock.patch.object(criterion, "check_finite_predictions", lambda outputs: None):
            trainer.run_step()

    fns = {
        "check alone": lambda: criterion.check_finite_predictions(outputs),
        "training step": trainer.run_step,
        "step without check": step_without_check,
    }
    with EventStorage(0) as trainer.storage:
        times = time_interleaved(fns, repeats=repeats, warmup=2, sync=device_sync(cfg.train.device))
    return timings(times, "training step")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks nonfinite-check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_step_arguments(parser, repeats=10)
    args, cfg = parse_step_arguments(parser, argv)
    check, step, without = run(cfg, args.batch, args.size, args.repeats)

    print(describe_step(args.config_file, args.batch, args.size, cfg))
    rows = [
        [check.name, f"{check.seconds * 1e3:.4f}", f"{100 * check.ratio:.4f}"],
        [step.name, f"{step.seconds * 1e3:.1f}", "100"],
        [without.name, f"{without.seconds * 1e3:.1f}", f"{100 * without.ratio:.2f}"],
    ]
    print(format_table(["", "ms", "% of a step"], rows))
