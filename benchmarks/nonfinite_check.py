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
from unittest import mock

import torch
from detectron2.utils.events import EventStorage

from yolos_d2.modeling import criterion
from yolos_d2.utils.table import format_table
from .timing import time_interleaved
from .training import add_step_arguments, build_trainer, parse_step_arguments, synthetic_batch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks nonfinite-check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_step_arguments(parser, repeats=10)
    args, cfg = parse_step_arguments(parser, argv)
    size, device = args.size, cfg.train.device

    trainer = build_trainer(cfg, args.batch, size)
    model = trainer.model
    with torch.no_grad():  # the predictions of the step's batch
        batch = synthetic_batch(args.batch, size, model.criterion.num_classes)
        outputs = model.detector(model.preprocess_image(batch).tensor)

    def step_without_check():
        with mock.patch.object(criterion, "check_finite_predictions", lambda outputs: None):
            trainer.run_step()

    on_cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    with EventStorage(0) as trainer.storage:
        times = time_interleaved(
            {
                "check": lambda: criterion.check_finite_predictions(outputs),
                "step": trainer.run_step,
                "step without check": step_without_check,
            },
            repeats=args.repeats,
            warmup=2,
            sync=sync,
        )

    device = f"{device} ({torch.cuda.get_device_name() if on_cuda else f'{torch.get_num_threads()} threads'})"
    print(f"{args.config_file}, batch {args.batch} at {size[0]}x{size[1]}, {device}, amp {trainer.amp_dtype}")
    rows = [
        ["check alone", f"{times['check'] * 1e3:.4f}", f"{100 * times['check'] / times['step']:.4f}"],
        ["training step", f"{times['step'] * 1e3:.1f}", "100"],
        ["step without check", f"{times['step without check'] * 1e3:.1f}",
         f"{100 * times['step without check'] / times['step']:.2f}"],
    ]
    print(format_table(["", "ms", "% of a step"], rows))
