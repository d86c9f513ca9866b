"""
Train and evaluate YOLOS with a LazyConfig, the way detectron2's ``tools/lazyconfig_train_net.py``
does::

    yolos-train --config-file configs/yolos_s.py --num-gpus 8
    yolos-train --config-file configs/yolos_s.py --eval-only --weights model.pth
    yolos-train --config-file configs/quickstart.py    # a few minutes on a CPU

(also ``python -m yolos_d2.tools.train`` or ``python train_net.py``). ``--resume`` continues from
the last checkpoint in ``train.output_dir``, with the intra-op thread count that computed it; one
run at a time may use that folder (a second one fails at start, naming the first). With
``train.device=cpu`` (the default without CUDA), ``--num-gpus N`` runs N CPU processes with the
gloo backend. On several machines, each runs the
command with ``--num-machines``, its ``--machine-rank`` and machine 0's ``--dist-url``; under
torchrun, which starts the processes itself, the processes form one group from its environment
(see docs/cluster.md). ``--eval-only`` writes the evaluator's files (COCO's
``coco_instances_results.json``) into ``<train.output_dir>/inference`` unless
``dataloader.evaluator.output_dir`` names a folder; with several processes, each evaluates its
share of the images.

A config file that does not exist, an override of a key that does not exist, sizes the model
cannot use, values of the wrong type or range, a device that does not exist, a batch that does
not divide among the processes, ``--eval-only`` without weights, weights that do not exist,
dataset files that do not exist or whose classes are not the model's, TF32
(``train.allow_tf32=True``) without a CUDA device, and a checkpoint that
``--resume`` cannot continue from end the command at start, before any
process or file is created (the folder's lock aside), with a message naming them (see
``yolos_d2.config`` and ``yolos_d2.engine.resume``).
"""
import argparse
import contextlib
import inspect
import logging
import os
import re
import sys
import warnings
from datetime import timedelta
from functools import partial
from typing import List, Optional, Sequence, Tuple

import torch
from detectron2.config import instantiate
from detectron2.engine import create_ddp_model, default_argument_parser, default_setup, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from detectron2.utils.registry import locate

from ..checkpoint import YOLOSCheckpointer
from ..config import ConfigError, check_launch, prepare_config
from ..data import check_datasets, check_num_classes
from ..engine import (
    EMAHook,
    PeriodicCheckpointer,
    SavePredictionImages,
    WeightEMA,
    YOLOSTrainer,
    iters_per_epoch,
    launch,
    register_schedule_resolvers,
    scaled_lr,
)
from ..inference import build_inference_model
from ..engine.amp import resolve_amp_dtype
from ..engine.launch import DEFAULT_TIMEOUT, TorchrunPlace, check_machines, join_torchrun_group, torchrun_place
from ..engine.resume import ResumeError, ResumePoint, find_resume_point, has_last_checkpoint
from ..engine.run_lock import OutputDirError, RunLock
from ..engine.threads import resolve_num_threads, set_num_threads
from . import cli

logger = logging.getLogger("yolos_d2")

# The flags that say which processes run where, dest -> flag: torchrun's own options replace them.
LAUNCH_FLAGS = {
    "num_gpus": "--num-gpus",
    "num_machines": "--num-machines",
    "machine_rank": "--machine-rank",
    "dist_url": "--dist-url",
}

# A terminal colour: detectron2 highlights the config file it logs (with pygments).
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class _PlainText(logging.Filter):
    """Removes terminal colours from the messages of a logger, so that log.txt holds plain text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b[" in message:
            record.msg, record.args = _ANSI_COLOUR.sub("", message), ()
        return True


_PLAIN_TEXT = _PlainText()


def do_test(cfg, model):
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``."""
    data_loader = instantiate(cfg.dataloader.test)
    check_num_classes(cfg.dataloader.test.dataset.names, cfg.model.detector.num_classes)
    results = inference_on_dataset(model, data_loader, instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def build_train_loader(cfg, start_iter: int, seed: int):
    """``cfg.dataloader.train`` starting at batch ``start_iter`` of the image order of ``seed``."""
    cfg.dataloader.train.update(start_iter=start_iter, seed=seed)
    data_loader = instantiate(cfg.dataloader.train)
    check_num_classes(cfg.dataloader.train.dataset.names, cfg.model.detector.num_classes)
    return data_loader


def use_default_evaluation_output(cfg) -> None:
    """
    Have the evaluator write its files (COCO's ``coco_instances_results.json``) into
    ``<train.output_dir>/inference``, as detectron2's tools do, unless the config names a folder
    (``dataloader.evaluator.output_dir``) or the evaluator takes none.
    """
    evaluator = cfg.dataloader.evaluator
    target = evaluator._target_
    parameters = inspect.signature(locate(target) if isinstance(target, str) else target).parameters
    if "output_dir" in parameters and not evaluator.get("output_dir"):
        evaluator.output_dir = os.path.join(cfg.train.output_dir, "inference")


def ema_enabled(cfg) -> bool:
    """Whether the config trains an EMA of the weights (``train.ema.enabled``)."""
    ema = cfg.train.get("ema")
    return bool(ema and ema.enabled)


def build_ema(cfg, model) -> Optional[WeightEMA]:
    """The EMA of ``model``'s weights that ``cfg.train.ema`` asks for; None if it is not enabled."""
    if not ema_enabled(cfg):
        return None
    return WeightEMA(model, decay=cfg.train.ema.decay, warmup_iters=cfg.train.ema.warmup_iters)


def build_hooks(cfg, model, checkpointer):
    """
    The training hooks. With ``train.ema.enabled``, an :class:`EMAHook` first, whose average the
    checkpointer saves (under "ema") and the evaluation and prediction drawings use (unless
    ``train.eval_with_ema=False``); the trained weights are saved too (under "model").
    """
    main = comm.is_main_process()
    ema = build_ema(cfg, model)
    if ema is not None:
        checkpointer.add_checkpointable("ema", ema)
    weights = ema.applied if ema is not None and cfg.train.get("eval_with_ema", True) else contextlib.nullcontext

    def evaluate():
        with weights():
            return do_test(cfg, model)

    train_hooks = [
        hooks.IterationTimer(),
        EMAHook(ema) if ema is not None else None,
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        hooks.EvalHook(cfg.train.eval_period, evaluate),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), cfg.train.log_period)
        if main
        else None,
    ]
    if main and cfg.train.get("prediction_images"):
        train_hooks.append(
            SavePredictionImages(
                dataset_name=cfg.dataloader.test.dataset.names,
                mapper=instantiate(cfg.dataloader.test.mapper),
                weights=weights,
                **cfg.train.prediction_images,
            )
        )
    return train_hooks


def wrap_ddp(cfg, model):
    """DistributedDataParallel when there are several workers; CPU models take no device ids."""
    # DDP warns once that a gradient's strides differ from its bucket's: that of det_pos_embed,
    # (1, N, D), is a slice of the gradient of the tokens it is concatenated with, with another
    # stride along its dimension of size 1. DDP copies it into the bucket; the results are the same.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides", category=UserWarning)
    device_ids = {} if cfg.train.device.startswith("cuda") else {"device_ids": None}
    return create_ddp_model(model, **cfg.train.ddp, **device_ids)


def resolve_schedule(cfg) -> None:
    """
    Log the schedule in one line. A recipe stated in epochs (``train.schedule``) run at another
    total batch than its own warns, and with ``train.schedule.scale_lr`` scales ``optimizer.lr``
    linearly (in ``cfg``, before the optimizer and its schedule are built).
    """
    total_batch = cfg.dataloader.train.total_batch_size
    schedule = cfg.train.get("schedule")
    if schedule is None:
        logger.info(f"Schedule: {cfg.train.max_iter} iterations of {total_batch} images, lr {cfg.optimizer.lr:g}")
        return
    reference = schedule.reference_batch_size
    if total_batch != reference:
        if schedule.scale_lr:
            lr = scaled_lr(cfg.optimizer.lr, total_batch, reference)
            logger.info(f"train.schedule.scale_lr: lr {cfg.optimizer.lr:g} at {reference} images -> {lr:g} at {total_batch}")
            cfg.optimizer.lr = lr
        else:
            logger.warning(
                f"The recipe is for {reference} images per iteration; this run has {total_batch}. The lr stays "
                f"{cfg.optimizer.lr:g}, as the original keeps it; train.schedule.scale_lr=True scales it linearly "
                f"(to {scaled_lr(cfg.optimizer.lr, total_batch, reference):g})."
            )
    per_epoch = iters_per_epoch(schedule.epoch_size, total_batch)
    logger.info(
        f"Schedule: {schedule.epochs} epochs of {per_epoch} iterations ({schedule.epoch_size} images at "
        f"{total_batch} per iteration); train.max_iter {cfg.train.max_iter}; lr {cfg.optimizer.lr:g}"
    )


def do_train(args, cfg):
    resolve_schedule(cfg)
    model = instantiate(cfg.model).to(cfg.train.device)
    logger.info(f"Model:\n{model}")
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    model = wrap_ddp(cfg, model)

    trainer = YOLOSTrainer(
        model,
        partial(build_train_loader, cfg),
        optimizer,
        amp_dtype=cfg.train.amp.dtype,
        clip_grad_norm=cfg.train.clip_grad_norm,
        seed=cfg.train.seed,
    )
    checkpointer = YOLOSCheckpointer(
        model, cfg.train.output_dir, strict=cfg.train.init_checkpoint_strict, trainer=trainer
    )
    trainer.register_hooks(build_hooks(cfg, model, checkpointer))
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    if args.resume:
        check_same_start(start_iter)
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def check_same_start(start_iter: int) -> None:
    """
    Raise ``ResumeError`` unless every process starts at ``start_iter``: with ``--resume``, each
    loads the last checkpoint of ``train.output_dir`` on its machine, which must be the same.
    """
    starts = comm.all_gather(start_iter)
    if len(set(starts)) > 1:
        raise ResumeError(
            f"--resume: the processes would start at iterations {starts} (by rank), from the last checkpoints of "
            "train.output_dir on their machines, which differ: share the folder between the machines, or copy "
            "last_checkpoint and the checkpoint it names to each"
        )


def argument_parser() -> argparse.ArgumentParser:
    """
    The tools' ``--config-file``, ``--weights`` and ``--device`` and detectron2's training flags
    (those of ``detectron2.engine.default_argument_parser``); parse with :func:`cli.parse_args`,
    which takes ``KEY=VALUE`` overrides anywhere on the command line.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in train.output_dir")
    parser.add_argument("--eval-only", action="store_true", help="evaluate the weights (--weights) and end")
    parser.add_argument(
        "--num-gpus", type=int, default=1, help="processes per machine (CPU processes with train.device=cpu)"
    )
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)")
    parser.add_argument(
        "--dist-url",
        # detectron2's default: a port derived from the user id, so that users of one machine differ.
        default=default_argument_parser().get_default("dist_url"),
        help="initialization URL for pytorch distributed backend; 'auto' picks a free port on one machine",
    )
    parser.add_argument(
        "--dist-timeout",
        type=cli.positive_number,
        default=DEFAULT_TIMEOUT.total_seconds() / 60,
        metavar="MINUTES",
        help="how long a process waits for the others, to meet them and at each exchange, before it fails "
        f"(default {DEFAULT_TIMEOUT.total_seconds() / 60:g})",
    )
    return parser


def load_checked_config(args: argparse.Namespace):
    """
    The config of ``args`` (see :func:`argument_parser`) with its overrides, ``--weights`` and
    ``--device`` applied and checked, also against the processes to launch; raises ``ConfigError``.
    """
    # The config.yaml a run saves keeps the paper configs' ${yolos_d2.epochs_to_iters:...} and
    # ${yolos_d2.iters_per_epoch:...}; unlike the config files, it cannot register them itself.
    register_schedule_resolvers()
    cfg = prepare_config(args.config_file, args.opts, args.weights, args.device)
    check_launch(cfg, args.num_gpus, args.num_machines, training=not args.eval_only)
    check_machines(args.num_machines, args.machine_rank, args.dist_url)
    if args.eval_only and not cfg.train.init_checkpoint:
        raise ConfigError("--eval-only needs the weights to evaluate: --weights FILE (or train.init_checkpoint=FILE)")
    if not (continues_a_run(args) and has_last_checkpoint(cfg.train.output_dir)):  # else it loads that checkpoint
        check_weights_exist(cfg)
    return cfg


def continues_a_run(args: argparse.Namespace) -> bool:
    """Whether the command continues the run of ``train.output_dir`` (``--resume``, without ``--eval-only``)."""
    return args.resume and not args.eval_only


def check_weights_exist(cfg) -> None:
    """Raise ``ConfigError`` if ``train.init_checkpoint`` names a local file that does not exist."""
    path = cfg.train.init_checkpoint
    if path and "://" not in path and not os.path.isfile(path):  # a URL is fetched when loaded
        raise ConfigError(f"train.init_checkpoint={path!r}: file not found (--weights sets it)")


def resolve_threads(cfg, processes: int, resume_point: Optional[ResumePoint] = None) -> Tuple[int, str]:
    """
    The intra-op threads of each of the ``processes`` of this machine, and why: ``train.num_threads``,
    whose "auto" takes the count of the checkpoint resumed (``resume_point``), and does not depend on
    the load of the machine in a seeded run (see :func:`yolos_d2.engine.threads.resolve_num_threads`).
    """
    recorded = resume_point.num_threads if resume_point is not None else None
    return resolve_num_threads(cfg.train.num_threads, processes, recorded=recorded, measure_load=cfg.train.seed < 0)


def worker_main(args: argparse.Namespace):
    """Train, or with ``--eval-only`` evaluate, in one of the processes :func:`main` launches."""
    cfg = load_checked_config(args)
    # main() resolves the threads before launching; a caller of worker_main alone resolves them here.
    num_threads, why = getattr(args, "num_threads", None) or resolve_threads(cfg, comm.get_local_size())
    # Both recorded in config.yaml as chosen.
    cfg.train.num_threads = num_threads
    cfg.train.amp.dtype, amp_why = resolve_amp_dtype(cfg.train.amp.dtype, cfg.train.device)
    logging.getLogger("detectron2").addFilter(_PLAIN_TEXT)
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="yolos_d2")
    set_num_threads(num_threads, why)
    if not args.eval_only:
        logger.info(amp_why)
    set_tf32(cfg.train.get("allow_tf32", False))
    if args.eval_only:
        use_default_evaluation_output(cfg)
        return do_test(cfg, wrap_ddp(cfg, build_inference_model(cfg)))
    return do_train(args, cfg)


def set_tf32(allowed: bool) -> None:
    """
    With ``allowed`` (``train.allow_tf32``, which :func:`check_launch` allows on a CUDA device
    only), have this process's float32 matrix products run in TF32; else keep torch's setting.
    """
    if allowed:
        torch.backends.cuda.matmul.allow_tf32 = True
        logger.info("train.allow_tf32: float32 matrix products run in TF32")


def launch_flags_given(parser: argparse.ArgumentParser, argv: Sequence[str]) -> List[str]:
    """The flags of :data:`LAUNCH_FLAGS` that the command line ``argv`` gives, whatever their values."""
    not_given = object()
    namespace = argparse.Namespace(**dict.fromkeys(LAUNCH_FLAGS, not_given))
    parser.parse_known_args([a for a in argv if not cli.OVERRIDE.match(a)], namespace)
    return [flag for dest, flag in LAUNCH_FLAGS.items() if getattr(namespace, dest) is not not_given]


def place_under_torchrun(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]
) -> Optional[TorchrunPlace]:
    """
    Where torchrun runs this process (see :func:`torchrun_place`), None when torchrun did not
    start it. Under torchrun, the launch arguments of ``args`` are set to that place: its
    processes per machine, its machines, this machine's rank and the init_method ``env://``.
    torchrun's options say which processes run where, so a launch flag given on the command line
    too is a usage error, as are torchrun's variables when some are missing.
    """
    try:
        place = torchrun_place()
    except ValueError as e:
        parser.error(str(e))
    if place is None:
        return None
    given = launch_flags_given(parser, argv)
    if given:
        parser.error(
            f"{' '.join(given)} under torchrun: torchrun's options (--nproc-per-node, --nnodes) say which processes "
            f"run where; give this command none of {', '.join(LAUNCH_FLAGS.values())}"
        )
    args.num_gpus, args.num_machines = place.local_world_size, place.num_machines
    args.machine_rank, args.dist_url = place.machine_rank, "env://"
    return place


def output_dir_lock(output_dir: str, machine_rank: int, under_torchrun: bool) -> contextlib.AbstractContextManager:
    """
    The lock of ``output_dir`` (a :class:`RunLock`) for all the processes of a run, held by one
    process, the one whose processes write the shared files (checkpoints, metrics, config.yaml):

    - processes started by this command (:func:`launch`): this process on machine 0, for the
      processes it starts. On another machine, none: its processes cannot tell the lock of their
      machine 0, in a folder the machines share, from that of another run before they meet;
    - under torchrun, which starts each process itself: global rank 0, once the group is formed,
      which tells the others whether it got the lock, so that a refused run ends in every process
      with the same message (:class:`OutputDirError`).
    """
    if under_torchrun:
        return _locked_by_rank_0(output_dir)
    return RunLock(output_dir) if machine_rank == 0 else contextlib.nullcontext()


@contextlib.contextmanager
def _locked_by_rank_0(output_dir: str):
    """The lock of ``output_dir``, held by global rank 0 while the ``with`` block runs; see :func:`output_dir_lock`."""
    lock, refusal = RunLock(output_dir), None
    if comm.is_main_process():
        try:
            lock.acquire()
        except OutputDirError as e:
            refusal = str(e)
    refusal = comm.all_gather(refusal)[0]
    if refusal is not None:
        raise OutputDirError(refusal)
    try:
        yield
    finally:
        lock.release()


def check_run(args: argparse.Namespace):
    """
    The config of ``args`` checked as :func:`main` checks it before any process starts
    (:func:`load_checked_config`), and the datasets the run reads: their files exist and their
    classes are the model's. Raises ``ValueError`` (``ConfigError``, ``DatasetError``).
    """
    cfg = load_checked_config(args)
    read = [cfg.dataloader.test] if args.eval_only else [cfg.dataloader.train, cfg.dataloader.test]
    for names in (loader.dataset.names for loader in read):
        check_datasets(names, cfg.model.detector.num_classes)
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    The command on ``argv`` (default ``sys.argv[1:]``): check everything, take the output
    folder's lock, then launch :func:`worker_main` in ``--num-gpus`` processes, or under torchrun
    run it in this process, one of the group torchrun started; 0 when it ends.
    """
    parser = argument_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = cli.parse_args(parser, argv)
    place = place_under_torchrun(parser, args, argv)
    timeout = timedelta(minutes=args.dist_timeout)
    with contextlib.ExitStack() as stack:
        # A mistake in the config, weights that do not exist, dataset files that do not exist or
        # whose classes are not the model's, a folder another run uses or a checkpoint --resume
        # cannot continue from end the command here, before anything is written and before any
        # process starts (under torchrun, where each process checks, before they meet; but the
        # lock, which rank 0 takes once they have met: see output_dir_lock).
        try:
            cfg = check_run(args)
            if place is not None:
                join_torchrun_group(place, timeout, cfg.train.device)
            stack.enter_context(output_dir_lock(cfg.train.output_dir, args.machine_rank, place is not None))
            resume_point = find_resume_point(cfg.train.output_dir, ema_enabled(cfg)) if continues_a_run(args) else None
        except (ValueError, OutputDirError) as e:  # ConfigError, DatasetError, ResumeError, an unreadable checkpoint
            parser.error(str(e))
        # Chosen here, before the workers start and keep the CPUs busy; each worker sets them.
        args.num_threads = resolve_threads(cfg, args.num_gpus, resume_point)
        if place is not None:
            worker_main(args)
        else:
            launch(
                worker_main,
                args.num_gpus,
                num_machines=args.num_machines,
                machine_rank=args.machine_rank,
                dist_url=args.dist_url,
                args=(args,),
                timeout=timeout,
                device=cfg.train.device,
            )
    return 0


# Each process sets up its own log output (with its rank, into train.output_dir).
console_main = cli.console_script(main, setup_logging=False)

if __name__ == "__main__":
    console_main()
