"""
Training steps on a CPU shared with other work: torch's default threads against one thread and
the count ``train.num_threads="auto"`` chooses (:mod:`yolos_d2.engine.threads`), each alone and
beside competing processes, in one run::

    python -m benchmarks threads [--config-file configs/quickstart.py] [--batch 16] [--size 128x128] [--competitors 1]

A competitor is a process spinning on one core (a Python busy loop), started before the timed
steps of that row and stopped after them; "auto" measures the busy CPUs with the competitors
running, as ``yolos-train`` does at start. Each row gives the median seconds per step of
``--repeats`` steps after one untimed, and the ratio to the same thread count with no competitor.
"""
import argparse
import subprocess
import sys
import time
from typing import Dict

import torch
from detectron2.utils.events import EventStorage

from yolos_d2.engine.threads import available_cpus, choose_num_threads
from yolos_d2.utils.table import format_table
from .timing import time_interleaved
from .training import add_step_arguments, build_trainer, parse_step_arguments

__all__ = ["main"]


def start_competitors(count: int) -> list:
    """``count`` processes, each keeping one core busy until terminated."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks threads", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_step_arguments(parser, repeats=10)
    parser.set_defaults(config_file="configs/quickstart.py", batch=16, size="128x128")
    parser.add_argument("--competitors", type=int, default=1, help="busy processes beside the training steps")
    args, cfg = parse_step_arguments(parser, argv)
    default_threads = torch.get_num_threads()
    trainer = build_trainer(cfg, args.batch, args.size)

    rows = []
    alone: Dict[int, float] = {}  # thread count -> seconds per step with no competitor
    with EventStorage(0) as trainer.storage:
        for competitors in (0, args.competitors):
            processes = start_competitors(competitors)
            try:
                time.sleep(0.5)  # let them start spinning
                auto, why = choose_num_threads()
                for label, threads in (("torch default", default_threads), ("1", 1), ("auto", auto)):
                    torch.set_num_threads(threads)
                    seconds = time_interleaved({"step": trainer.run_step}, repeats=args.repeats, warmup=1)["step"]
                    if competitors == 0:
                        alone[threads] = seconds
                    ratio = f"{seconds / alone[threads]:.2f}" if threads in alone else "-"
                    rows.append([competitors, label, threads, f"{seconds:.3f}", ratio])
                print(f"{competitors} competitors: auto chose {auto} threads ({why})")
            finally:
                for process in processes:
                    process.terminate()
                    process.wait()
    torch.set_num_threads(default_threads)
    print(
        f"{args.config_file}, batch {args.batch} at {args.size[0]}x{args.size[1]}, {available_cpus():g} CPUs "
        f"available, torch default {default_threads} threads"
    )
    print(format_table(["competitors", "threads", "count", "s/step", "against no competitor"], rows))
