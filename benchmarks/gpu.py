"""
The GPU measurements in one command, for a GPU host lent for a few minutes: one Markdown table
on standard output and in ``--output``, rewritten after each row, so that a run cut short keeps
what it measured::

    python -m benchmarks gpu --output output/gpu.md     # sized for a few minutes on one H100
    python -m benchmarks gpu --device cpu --dry-run     # one-block models, one round: seconds

The line above the table names the device and the versions of torch, CUDA, cuDNN and NCCL. The
sections, each a group of rows (its seconds are printed on standard error as it ends):

- CUDA against CPU: random transformers weights saved with ``save_pretrained``, converted by
  ``yolos-convert --format hf``, loaded by ``build_inference_model`` on the CPU and on the device;
  the largest difference of their float32 logits and boxes on the same images, and its ratio to
  the largest CPU value;
- inference: milliseconds per image of yolos_d2's detector and of transformers'
  ``YolosForObjectDetection`` with SDPA attention (same weights) in float32, float16 and, where
  the device computes it natively, bfloat16 (autocast), all timed interleaved; the ratio to the
  same implementation in float32 and to transformers in the same precision; the largest
  difference of the outputs from yolos_d2's in float32;
- training: steps per second and peak memory of the tensors a step allocates, in float32 and with
  ``train.amp.dtype`` float16 and bfloat16, each without and with activation checkpointing, all
  timed interleaved; the ratios to float32 and to no checkpointing;
- 2 processes: where there are 2 GPUs, a training step of each of 2 processes with
  DistributedDataParallel over NCCL (started as ``train_net.py --num-gpus 2`` starts them)
  against a step of one process, and an all-reduce of the gradients' size.

A section that cannot run on the device gives a row "skipped: <reason>"; one that fails gives a
row "failed: <error>" (its traceback on standard error), the next sections still run, and the
command ends with exit status 1. A ratio in the table is the row's value over its reference's.
"""
import argparse
import itertools
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO

import torch
import torch.distributed as dist
from detectron2.utils import comm

from yolos_d2.config import load_config, prepare_config
from yolos_d2.engine import launch
from yolos_d2.inference import build_inference_model
from yolos_d2.tools import cli, convert
from yolos_d2.tools.outputs import check_file_output
from yolos_d2.utils.file_io import write_atomic
from yolos_d2.utils.table import format_table
from .huggingface import random_huggingface_model
from .inference import (
    benchmark_dtypes,
    build_models,
    compare_and_time,
    forward_fn,
    in_precision,
    output_differences,
    parse_case,
)
from .timing import describe_device
from .training import (
    AMP_SETTINGS,
    CHECKPOINTING,
    build_trainer,
    measure_steps,
    precision_steps,
    precision_trainers,
    step_name,
)

__all__ = ["DRY_RUN", "FULL", "Plan", "Row", "main", "report", "run"]

# The precisions of the table, in the order of its rows; "fp32" is the reference of the others.
DTYPES = ("fp32", "fp16", "bf16")
TRANSFORMERS = "transformers sdpa"

# The measures of the rows, each with the format of its values.
MS_PER_IMAGE = "ms/image"
DIFFERENCE_FROM_FP32 = "max abs difference from yolos_d2 fp32"
LOGITS_DIFFERENCE = "max abs difference, logits"
BOXES_DIFFERENCE = "max abs difference, boxes"
STEPS_PER_SECOND = "steps/s"
PEAK_MIB = "peak MiB"
MS = "ms"
VALUE_FORMATS = {
    MS_PER_IMAGE: ".2f",
    DIFFERENCE_FROM_FP32: ".1e",
    LOGITS_DIFFERENCE: ".1e",
    BOXES_DIFFERENCE: ".1e",
    STEPS_PER_SECOND: ".2f",
    PEAK_MIB: ".0f",
    MS: ".2f",
}
HEADER = ["section", "case", "variant", "measure", "value", "× fp32", "× reference", "reference"]

# The things the 2 processes time, under these names.
ONE_PROCESS, TWO_PROCESSES, ALL_REDUCE = "1 process", "2 processes, DDP", "all-reduce"
# How long a process of the 2 waits for the other, to meet and at each exchange: a hang ends the
# section within the minutes a lent GPU has, not in torch's default half hour.
TWO_PROCESS_TIMEOUT = timedelta(minutes=2)
# The backend between the processes on each type of device (yolos_d2.engine.launch's choice).
BACKENDS = {"cuda": "NCCL", "cpu": "gloo"}


@dataclass(frozen=True)
class Plan:
    """
    What a run measures: ``inference`` and ``training`` cases (``CONFIG:HxW:BATCH``; the first
    training case is also the 2-process case), ``overrides`` applied to every config, and the
    rounds of :func:`~benchmarks.timing.time_interleaved`: ``repeats`` timed after ``warmup``.
    """

    inference: Sequence[str]
    training: Sequence[str]
    overrides: Sequence[str]
    repeats: int
    warmup: int


# YOLOS-Ti at its eval size and YOLOS-S at about its own, at batch 1 and 8; training at each
# recipe's images per GPU on 8 GPUs (16 and 8 images in all). About 340 forwards, 170 training
# steps and 30 steps of 2 processes: sized for a few minutes on one H100.
FULL = Plan(
    inference=[
        "configs/yolos_ti.py:512x688:1",
        "configs/yolos_ti.py:512x688:8",
        "configs/yolos_s.py:800x1216:1",
        "configs/yolos_s.py:800x1216:8",
    ],
    training=["configs/yolos_ti.py:512x688:2", "configs/yolos_s.py:800x1216:1"],
    overrides=[],
    repeats=10,
    warmup=3,
)
# Every section's code on a one-block model and small images, one round: seconds on a CPU.
DRY_RUN = Plan(
    inference=["configs/yolos_ti.py:64x96:1", "configs/yolos_ti.py:64x96:2"],
    training=["configs/yolos_ti.py:64x64:1"],
    overrides=[
        "model.detector.backbone.depth=1",
        "model.detector.backbone.init_pe_size=[64,96]",
        "model.detector.backbone.num_det_tokens=10",
    ],
    repeats=1,
    warmup=0,
)


@dataclass(frozen=True)
class Row:
    """
    One figure: its ``value`` in ``measure``; ``vs_fp32``, the value over that of the same thing
    in float32; ``vs_reference``, the value over that of ``reference``. A row that measured
    nothing has ``outcome`` "skipped: <reason>" or "failed: <error>" and no value.
    """

    section: str
    case: str
    variant: str
    measure: str
    value: Optional[float] = None
    vs_fp32: Optional[float] = None
    vs_reference: Optional[float] = None
    reference: str = ""
    outcome: str = ""


def ratio(value: float, reference: float) -> Optional[float]:
    """``value / reference``; None where the reference is 0."""
    return value / reference if reference else None


def case_label(case: str) -> str:
    """'configs/yolos_ti.py:512x688:8' -> 'yolos_ti.py 512x688 x8'."""
    config_file, (height, width), batch = parse_case(case)
    return f"{os.path.basename(config_file)} {height}x{width} x{batch}"


def precision_skips(device: str) -> Dict[str, str]:
    """The precisions of :data:`DTYPES` not run on ``device`` (:func:`benchmark_dtypes`), with the reason."""
    measured = benchmark_dtypes(device)
    reasons = {
        "fp16": f"float16 autocast is measured on CUDA GPUs only, not on {device}",
        "bf16": f"{device} does not compute bfloat16 natively",
    }
    return {dtype: reason for dtype, reason in reasons.items() if dtype not in measured}


def run_precisions(device: str) -> List[str]:
    """The precisions of :data:`DTYPES` run on ``device``, float32 first."""
    return [dtype for dtype in DTYPES if dtype not in precision_skips(device)]


def skipped_rows(section: str, device: str) -> List[Row]:
    """A row "skipped: <reason>" for each precision ``device`` does not run."""
    skips = precision_skips(device)
    return [Row(section, "all", dtype, "-", outcome=f"skipped: {reason}") for dtype, reason in skips.items()]


def converted_random_weights(config_file: str, overrides: Sequence[str], folder: str) -> str:
    """
    Random transformers weights of the config's backbone (:func:`random_huggingface_model`) saved
    with ``save_pretrained`` in ``folder``/hf, converted by ``yolos-convert --format hf`` to
    ``folder``/model.pth: its path.
    """
    hf_folder, weights = os.path.join(folder, "hf"), os.path.join(folder, "model.pth")
    random_huggingface_model(load_config(config_file, overrides).model.detector.backbone).save_pretrained(hf_folder)
    status = convert.main([hf_folder, weights, "--format", "hf", "--config-file", config_file, *overrides])
    if status != 0:
        raise RuntimeError(f"yolos-convert --format hf {hf_folder} failed (exit status {status})")
    return weights


def detector_outputs(
    config_file: str, overrides: Sequence[str], weights: str, device: str, images: torch.Tensor
) -> Dict[str, torch.Tensor]:
    """
    The float32 "pred_logits" and "pred_boxes" on ``images`` (moved to ``device``) of the model
    ``build_inference_model`` loads on ``device`` with ``weights``, brought to the CPU.
    """
    model = build_inference_model(prepare_config(config_file, overrides, weights=weights, device=device))
    with torch.inference_mode():
        outputs = model.detector(images.to(device))
    return {name: outputs[name].cpu() for name in ("pred_logits", "pred_boxes")}


def agreement_rows(plan: Plan, device: str) -> Iterator[Row]:
    """CUDA against CPU: for each config of the inference cases, at its first case's size, batch 1."""
    section = "CUDA vs CPU"
    sizes = {}  # config file -> the size of its first case
    for case in plan.inference:
        sizes.setdefault(parse_case(case)[0], parse_case(case)[1])
    for config_file, (height, width) in sizes.items():
        images = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
        with tempfile.TemporaryDirectory() as folder:
            weights = converted_random_weights(config_file, plan.overrides, folder)
            cpu = detector_outputs(config_file, plan.overrides, weights, "cpu", images)
            other = detector_outputs(config_file, plan.overrides, weights, device, images)
        differences = output_differences(cpu, other)
        variant = f"yolos-convert --format hf, {device} vs cpu, fp32"
        for name, measure in (("pred_logits", LOGITS_DIFFERENCE), ("pred_boxes", BOXES_DIFFERENCE)):
            largest = cpu[name].abs().max().item()
            yield Row(
                section,
                f"{os.path.basename(config_file)} {height}x{width} x1",
                variant,
                measure,
                differences[name],
                vs_reference=ratio(differences[name], largest),
                reference="largest abs value on the CPU",
            )


def inference_rows(plan: Plan, device: str) -> Iterator[Row]:
    """
    Inference: each case's implementations in each precision, timed interleaved; the models of a
    config are built once for its cases.
    """
    section = "inference"
    dtypes = run_precisions(device)
    yield from skipped_rows(section, device)
    for config_file, cases in itertools.groupby(plan.inference, key=lambda case: parse_case(case)[0]):
        models = build_models(load_config(config_file, plan.overrides), device, attentions=("sdpa",))
        for case in cases:
            yield from inference_case_rows(section, case, models, dtypes, plan, device)
        del models
        empty_cache(device)


def inference_case_rows(
    section: str, case: str, models: Dict[str, torch.nn.Module], dtypes: Sequence[str], plan: Plan, device: str
) -> Iterator[Row]:
    """The rows of one inference case: each implementation's time per image and difference in each precision."""
    _, (height, width), batch = parse_case(case)
    images = torch.randn(batch, 3, height, width, device=device)
    with torch.inference_mode():
        reference = models["yolos_d2"](images)
    variants = [(name, dtype) for dtype in dtypes for name in models]
    fns = {
        f"{name} {dtype}": in_precision(forward_fn(name, models[name], images), device, dtype)
        for name, dtype in variants
    }
    times, differences = compare_and_time(fns, reference, device, plan.repeats, plan.warmup)
    for name, dtype in variants:
        variant, peer = f"{name} {dtype}", f"{TRANSFORMERS} {dtype}"
        yield Row(
            section,
            case_label(case),
            variant,
            MS_PER_IMAGE,
            times[variant] * 1e3 / batch,
            vs_fp32=times[variant] / times[f"{name} fp32"],
            vs_reference=times[variant] / times[peer],
            reference=peer,
        )
        if variant != "yolos_d2 fp32":  # the reference of the differences
            yield Row(
                section,
                case_label(case),
                variant,
                DIFFERENCE_FROM_FP32,
                differences[variant],
                vs_reference=ratio(differences[variant], differences[peer]),
                reference=peer,
            )


def training_rows(plan: Plan, device: str) -> Iterator[Row]:
    """Training: each case's steps in each precision, without and with activation checkpointing, timed interleaved."""
    section = "training"
    yield from skipped_rows(section, device)
    dtypes = run_precisions(device)
    for case in plan.training:
        config_file, size, batch = parse_case(case)
        cfg = prepare_config(config_file, plan.overrides, device=device)
        steps = precision_steps(precision_trainers(cfg, dtypes, batch, size))
        times, memory = measure_steps(steps, device, plan.repeats, plan.warmup)
        del steps
        empty_cache(device)
        for dtype, checkpointing in itertools.product(dtypes, CHECKPOINTING):
            name, off = step_name(dtype, checkpointing), step_name(dtype, "off")
            label, reference = case_label(case), f"checkpointing off, {dtype}"
            yield from step_rows(
                section, label, name, times, memory, off, reference, fp32=step_name("fp32", checkpointing)
            )


def step_rows(
    section: str,
    case: str,
    name: str,
    times: Dict[str, float],
    memory: Dict[str, int],
    reference_name: str,
    reference: str,
    fp32: Optional[str] = None,
) -> List[Row]:
    """
    The steps/s and peak-memory rows of the step ``name`` (seconds per step in ``times``, peak
    bytes in ``memory``), against the step ``reference_name`` (described as ``reference``) and,
    given its name, the same step in float32.
    """
    seconds, peak = times[name], memory[name]
    return [
        Row(
            section,
            case,
            name,
            STEPS_PER_SECOND,
            1 / seconds,
            vs_fp32=times[fp32] / seconds if fp32 else None,
            vs_reference=times[reference_name] / seconds,
            reference=reference,
        ),
        Row(
            section,
            case,
            name,
            PEAK_MIB,
            peak / 2**20,
            vs_fp32=ratio(peak, memory[fp32]) if fp32 else None,
            vs_reference=ratio(peak, memory[reference_name]),
            reference=reference,
        ),
    ]


def two_process_skip(device: str) -> Optional[str]:
    """Why the 2-process section cannot run on ``device``; None where it can."""
    if not device.startswith("cuda"):
        return f"NCCL runs between CUDA GPUs, not on {device}"
    if torch.cuda.device_count() < 2:
        return "1 GPU here: 2 processes over NCCL need 2"
    return None


def two_process_rows(plan: Plan, device: str) -> Iterator[Row]:
    """
    2 processes, one on each GPU, over NCCL (the same code runs over gloo on the CPU, which
    :func:`two_process_skip` leaves out): a DDP step of each against a 1-process step, and an
    all-reduce of the gradients' size.
    """
    section = "2 processes"
    skip = two_process_skip(device)
    if skip is not None:
        yield Row(section, "-", "-", "-", outcome=f"skipped: {skip}")
        return
    case, device_type = plan.training[0], torch.device(device).type
    result = measure_two_processes(case, plan, device_type)
    times, memory = result["seconds"], result["peak_bytes"]
    label = f"{case_label(case)} per process, fp32, {BACKENDS[device_type]}"
    for name in (ONE_PROCESS, TWO_PROCESSES):
        yield from step_rows(section, label, name, times, memory, ONE_PROCESS, ONE_PROCESS)
    yield Row(
        section,
        label,
        f"all-reduce of {result['gradients'] / 1e6:.1f}M float32 gradients",
        MS,
        times[ALL_REDUCE] * 1e3,
        vs_reference=times[ALL_REDUCE] / times[ONE_PROCESS],
        reference=f"{ONE_PROCESS}: its step's time",
    )


def measure_two_processes(case: str, plan: Plan, device: str) -> Dict:
    """
    Start 2 processes on ``device`` ("cuda": NCCL, one GPU each; "cpu": gloo) with yolos_d2's
    :func:`~yolos_d2.engine.launch`, which runs :func:`two_process_worker` in each; its result.
    """
    with tempfile.TemporaryDirectory() as folder:
        result_path = os.path.join(folder, "result.json")
        launch_args = (case, plan, device, result_path)
        launch(two_process_worker, 2, dist_url="auto", args=launch_args, timeout=TWO_PROCESS_TIMEOUT, device=device)
        with open(result_path) as f:
            return json.load(f)


def two_process_worker(case: str, plan: Plan, device: str, result_path: str) -> None:
    """
    In each process of a group of 2: training steps of the case's model without and with DDP, and
    an all-reduce of as many float32 numbers as the model has parameters, timed interleaved (the
    processes call them in the same order, meeting at each exchange). The first process writes
    the seconds, peak bytes and gradient count to ``result_path`` as JSON.
    """
    config_file, size, batch = parse_case(case)
    cfg = prepare_config(config_file, plan.overrides, device=device)
    cfg.train.amp.dtype = AMP_SETTINGS["fp32"]
    single, ddp = build_trainer(cfg, batch, size), build_trainer(cfg, batch, size, ddp=True)
    gradients = sum(p.numel() for p in single.model.parameters() if p.requires_grad)
    buffer = torch.zeros(gradients, device=cfg.train.device)
    steps = {ONE_PROCESS: single.run_step, TWO_PROCESSES: ddp.run_step}
    others = {ALL_REDUCE: lambda: dist.all_reduce(buffer)}
    times, memory = measure_steps(steps, cfg.train.device, plan.repeats, plan.warmup, others)
    if comm.is_main_process():
        with open(result_path, "w") as f:
            json.dump({"seconds": times, "peak_bytes": memory, "gradients": gradients}, f)


def empty_cache(device: str) -> None:
    """Give the memory of the tensors freed back to the device (CUDA), for the models built next."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# The sections in the order they run: name -> function yielding its rows.
SECTIONS: Dict[str, Callable[[Plan, str], Iterator[Row]]] = {
    "CUDA vs CPU": agreement_rows,
    "inference": inference_rows,
    "training": training_rows,
    "2 processes": two_process_rows,
}


def run(plan: Plan, device: str, sections: Iterable[str] = tuple(SECTIONS)) -> Iterator[Row]:
    """
    The rows of each of ``sections``, yielded as they are measured. A section that raises gives a
    row "failed: <error>" (the traceback on standard error) and the next section runs.
    """
    for section in sections:
        try:
            yield from SECTIONS[section](plan, device)
        except Exception as error:  # noqa: BLE001  (one section's failure on a lent GPU must not lose the others)
            traceback.print_exc()
            message = str(error).splitlines()[0] if str(error) else ""
            yield Row(section, "-", "-", "-", outcome=f"failed: {type(error).__name__}: {message}")


def format_row(row: Row) -> List[str]:
    """The cells of ``row`` in the table (:data:`HEADER`)."""
    value = row.outcome if row.value is None else format(row.value, VALUE_FORMATS[row.measure])
    ratios = [format_ratio(r) for r in (row.vs_fp32, row.vs_reference)]
    return [row.section, row.case, row.variant, row.measure, value, *ratios, row.reference or "-"]


def format_ratio(value: Optional[float]) -> str:
    """A ratio with 2 decimals, below 0.01 (a relative difference) with 2 significant digits; "-" for none."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value == 0 or value >= 0.01 else f"{value:.1e}"


def describe_run(device: str, plan: Plan) -> str:
    """The line above the table: the device, the versions, the rounds."""
    versions = f"torch {torch.__version__}, Python {platform.python_version()}"
    if device.startswith("cuda"):
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
        tf32 = "on" if torch.backends.cuda.matmul.allow_tf32 else "off"
        versions += (
            f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, NCCL {nccl}; "
            f"{torch.cuda.device_count()} GPUs visible; TF32 matrix products {tf32}"
        )
    rounds = f"timed rounds: {plan.repeats}, after {plan.warmup} of warm-up"
    return f"{device}: {describe_device(device)}; {versions}; {rounds}"


def report(rows: Iterable[Row], first_line: str, output: Optional[str], out: TextIO, log: TextIO) -> List[Row]:
    """
    Print ``first_line`` and the table's header to ``out``, then each row as it comes, and the
    seconds of each section to ``log`` as it ends. With ``output``, write ``first_line`` and the
    table so far to that file (atomically) at the start and after each row. Returns the rows.
    """
    written: List[Row] = []

    def write_output() -> None:
        if output is not None:
            text = first_line + "\n\n" + format_table(HEADER, [format_row(row) for row in written]) + "\n"
            write_atomic(output, lambda f: f.write(text.encode()))

    write_output()
    print(first_line + "\n\n" + format_table(HEADER, []), file=out, flush=True)
    start = section_start = last = time.perf_counter()
    for row in rows:
        if written and row.section != written[-1].section:
            print(f"{written[-1].section}: {last - section_start:.1f} s", file=log, flush=True)
            section_start = last
        last = time.perf_counter()
        written.append(row)
        print("| " + " | ".join(format_row(row)) + " |", file=out, flush=True)
        write_output()
    if written:
        print(f"{written[-1].section}: {last - section_start:.1f} s", file=log)
    print(f"all sections: {last - start:.1f} s", file=log, flush=True)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu with --dry-run (default cuda)")
    parser.add_argument("--output", metavar="FILE", help="a Markdown file to write the line and the table to")
    parser.add_argument(
        "--dry-run", action="store_true", help="one-block models, small images, one round: every section in seconds"
    )
    args = parser.parse_args(argv)
    plan = DRY_RUN if args.dry_run else FULL
    with cli.usage_errors(parser):  # before the first section's minutes
        if args.device == "cpu" and not args.dry_run:
            raise ValueError("--device cpu would time YOLOS-S at full size for an hour: add --dry-run, or use a GPU")
        for case in {*plan.inference, *plan.training}:  # the configs load, the device exists
            prepare_config(parse_case(case)[0], plan.overrides, device=args.device)
        if args.output is not None:
            check_output(args.output)
    gpu_index = torch.device(args.device).index
    if gpu_index is not None:  # "cuda:N": the current GPU, whose statistics the peak memory reads
        torch.cuda.set_device(gpu_index)
    # Converting and loading each model logs a few lines, which on standard output would split the table.
    logger = logging.getLogger("yolos_d2")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        rows = report(run(plan, args.device), describe_run(args.device, plan), args.output, sys.stdout, sys.stderr)
    finally:
        logger.setLevel(level)
    if any(row.outcome.startswith("failed") for row in rows):
        sys.exit(1)


def check_output(path: str) -> None:
    """Raise ValueError naming ``--output`` unless ``path`` can be a file, its folder made if need be."""
    check_file_output(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as error:
        raise ValueError(f"--output {path}: cannot make its folder: {error.strerror}") from None
