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
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.utils.events import EventStorage
from omegaconf import DictConfig

from yolos_d2.engine.threads import available_cpus, choose_num_threads
from yolos_d2.tools import cli
from yolos_d2.utils.table import format_table
from .timing import time_interleaved
from .training import add_step_arguments, build_trainer, parse_step_arguments

__all__ = ["run", "main"]


def start_competitors(count: int) -> list:
    """``count`` processes, each keeping one core busy until terminated."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@dataclass(frozen=True)
class ThreadsRow:
    """
    Training steps with ``threads`` intra-op threads (chosen as ``name`` says) beside
    ``competitors`` busy processes: median ``seconds`` per step, and ``ratio``, those over the
    seconds of the same thread count with no competitor (None where that count was not timed alone).
    """

    competitors: int
    name: str
    threads: int
    seconds: float
    ratio: Optional[float]


@dataclass(frozen=True)
class AutoChoice:
    """The thread count "auto" chose beside ``competitors`` busy processes, and why."""

    competitors: int
    threads: int
    why: str


@dataclass(frozen=True)
class ThreadsResult:
    """torch's default thread count, the rows (no competitor first) and what "auto" chose each time."""

    default_threads: int
    rows: List[ThreadsRow]
    auto: List[AutoChoice]


def run(cfg: DictConfig, batch: int, size: Tuple[int, int], repeats: int, competitors: int) -> ThreadsResult:
    """
    Time ``repeats`` training steps on ``batch`` synthetic images of ``size`` (H, W) with each
    thread count, alone and then beside ``competitors`` processes.
    """
    default_threads = torch.get_num_threads()
    trainer = build_trainer(cfg, batch, size)
    rows, auto_choices = [], []
    alone: Dict[int, float] = {}  # thread count -> seconds per step with no competitor
    with EventStorage(0) as trainer.storage:
        for count in (0, competitors):
            processes = start_competitors(count)
            try:
                time.sleep(0.5)  # let them start spinning
                auto, why = choose_num_threads()
                auto_choices.append(AutoChoice(count, auto, why))
                for name, threads in (("torch default", default_threads), ("1", 1), ("auto", auto)):
                    torch.set_num_threads(threads)
                    seconds = time_interleaved({"step": trainer.run_step}, repeats=repeats, warmup=1)["step"]
                    if count == 0:
                        alone[threads] = seconds
                    ratio = seconds / alone[threads] if threads in alone else None
                    rows.append(ThreadsRow(count, name, threads, seconds, ratio))
            finally:
                for process in processes:
                    process.terminate()
                    process.wait()
                torch.set_num_threads(default_threads)
    return ThreadsResult(default_threads, rows, auto_choices)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks threads", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_step_arguments(parser, repeats=10, config_file="configs/quickstart.py", batch=16, size=(128, 128))
    parser.add_argument(
        "--competitors",
        type=cli.positive_int,
        default=1,
        metavar="N",
        help="processes each keeping one core busy while every thread count is timed a second time (default 1)",
    )
    args, cfg = parse_step_arguments(parser, argv)
    result = run(cfg, args.batch, args.size, args.repeats, args.competitors)

    for choice in result.auto:
        print(f"{choice.competitors} competitors: auto chose {choice.threads} threads ({choice.why})")
    print(
        f"{args.config_file}, batch {args.batch} at {args.size[0]}x{args.size[1]}, {available_cpus():g} CPUs "
        f"available, torch default {result.default_threads} threads"
    )
    rows = [
        [row.competitors, row.name, row.threads, f"{row.seconds:.3f}", "-" if row.ratio is None else f"{row.ratio:.2f}"]
        for row in result.rows
    ]
    print(format_table(["competitors", "threads", "count", "s/step", "against no competitor"], rows))
