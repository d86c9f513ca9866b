"""
The speed and accuracy of a trained YOLOS at several input sizes, in each precision the device
computes natively::

    yolos-sweep --config-file configs/quickstart.py --weights output/quickstart/model_final.pth \\
        --sizes 64 96 128 160 --output output/quickstart/sweep

(also ``python -m yolos_d2.tools.sweep``).

YOLOS interpolates its position embeddings, so one trained model runs at any input size. For each
of ``--sizes`` (the images' shorter side in pixels, the longer one at most size * 1333 / 800:
the test mapper's ``detr_test_augmentations`` with that ``eval_size``, added to a config without
a test-time resize) and each precision the device computes natively (fp32; int8 on the CPU;
bf16 where :func:`~yolos_d2.inference.precision.bf16_is_fast`), the model is evaluated on the
config's test dataset with the config's evaluator, as ``--eval-only`` evaluates it, and the same
run times the model's forward on each image (one image per forward: normalising, the network, the
boxes scaled to the image; not reading, resizing or evaluating), after 5 untimed forwards.

It prints a table of the AP, AP50 and milliseconds per image (the median) of each size and
precision, with the override and ``--precision`` that deploy it (``yolos-demo``), and writes into
``--output``:

- ``speed_accuracy.md``: the table;
- ``speed_accuracy.png``: AP against milliseconds per image, one line per precision, each point
  labelled with its size.

Sizes below the model's patch size, a config whose test-time augmentations are neither
``detr_test_augmentations`` nor none, missing weights or dataset files, and an ``--output`` that
would replace an input or lie in a folder of the dataset's images are refused before anything
is evaluated (exit status 2). Each file is written atomically: a write that fails (e.g. a full
disk) leaves no partial file and ends the command (exit status 1), naming it.
"""
import argparse
import logging
import os
from collections import defaultdict
from typing import List, Sequence

from detectron2.config import instantiate

from ..config import prepare_config
from ..data import check_datasets
from ..inference import build_inference_model
from ..inference.sweep import (
    EVAL_SIZE_KEY,
    SweepPoint,
    has_eval_size,
    native_precisions,
    run_sweep,
    with_eval_size,
)
from ..utils.file_io import write_atomic
from ..utils.table import format_table
from ..visualization.speed_accuracy import draw_speed_accuracy
from . import cli
from .outputs import check_folder_output, check_outputs, config_inputs

logger = logging.getLogger(__name__)

TABLE_FILE, PLOT_FILE = "speed_accuracy.md", "speed_accuracy.png"
HEADER = ("eval size", "precision", "AP", "AP50", "ms / image", "deploy with")


def check_sizes(sizes: Sequence[int]) -> None:
    """Raise ValueError naming the sizes given more than once or above :data:`cli.MAX_IMAGE_SIDE`."""
    repeated = sorted({size for size in sizes if sizes.count(size) > 1})
    if repeated:
        raise ValueError(f"--sizes: {', '.join(map(str, repeated))} given more than once")
    too_large = [size for size in sizes if size > cli.MAX_IMAGE_SIDE]
    if too_large:
        raise ValueError(f"--sizes: {', '.join(map(str, too_large))} above {cli.MAX_IMAGE_SIDE} pixels")


def deploy_arguments(point: SweepPoint) -> str:
    """The config override and ``--precision`` that run a model at ``point``'s size and precision."""
    return f"{EVAL_SIZE_KEY}={point.eval_size} --precision {point.precision}"


def sweep_table(points: Sequence[SweepPoint]) -> str:
    """The Markdown table of ``points``: one row per point, in their order."""
    rows = [
        (p.eval_size, p.precision, f"{p.ap:.2f}", f"{p.ap50:.2f}", f"{p.ms_per_image:.2f}", f"`{deploy_arguments(p)}`")
        for p in points
    ]
    return format_table(HEADER, rows)


def resize_note(config_file: str, patch_size: int) -> str:
    """How to give a config without a test-time resize the one the sweep added, for the table's overrides."""
    return (
        f"`{config_file}` has no test-time resize: the sweep added `detr_test_augmentations`. To deploy a size, "
        f"first set `dataloader.test.mapper.augmentations = L(detr_test_augmentations)(eval_size=SIZE, "
        f"size_multiple={patch_size})` in the config (`from yolos_d2.data import detr_test_augmentations`)."
    )


def sweep_report(points: Sequence[SweepPoint], cfg, config_file: str) -> str:
    """The table of ``points`` (:func:`sweep_table`); for a config without a resize, :func:`resize_note` below it."""
    table = sweep_table(points)
    if has_eval_size(cfg):
        return table
    return f"{table}\n\n{resize_note(config_file, cfg.model.detector.backbone.patch_size)}"


def write_outputs(points: Sequence[SweepPoint], report: str, title: str, folder: str) -> List[str]:
    """Write ``report`` (the table) and the plot of ``points`` into ``folder``, atomically; returns their paths."""
    table_path, plot_path = os.path.join(folder, TABLE_FILE), os.path.join(folder, PLOT_FILE)
    write_atomic(table_path, lambda f: f.write((report + "\n").encode()))
    curves = defaultdict(list)
    for p in points:
        curves[p.precision].append((p.eval_size, p.ms_per_image, p.ap))
    draw_speed_accuracy(curves, title, plot_path)
    return [table_path, plot_path]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument(
        "--sizes",
        type=cli.positive_int,
        nargs="+",
        required=True,
        metavar="PIXELS",
        help="the images' shorter sides to evaluate at, each at least the model's patch size",
    )
    parser.add_argument("--output", required=True, help="folder for the table and the plot (created)")
    args = cli.parse_args(parser, argv)

    with cli.usage_errors(parser):  # a config mistake, a size, weights or data that cannot work
        check_sizes(args.sizes)
        cfg = prepare_config(args.config_file, args.opts, args.weights, args.device)
        for size in args.sizes:  # refused here, before any evaluation
            with_eval_size(cfg, size)
        check_datasets(cfg.dataloader.test.dataset.names, cfg.model.detector.num_classes)
        dataset_dicts = instantiate(cfg.dataloader.test.dataset)
    dataset_names = cfg.dataloader.test.dataset.names
    if not dataset_dicts:
        parser.error(f"dataset {dataset_names} has no images")
    outputs = [os.path.join(args.output, name) for name in (TABLE_FILE, PLOT_FILE)]
    image_folders = sorted({os.path.dirname(d["file_name"]) for d in dataset_dicts})
    inputs = [d["file_name"] for d in dataset_dicts]
    with cli.usage_errors(parser):  # an output that must not be written, weights that do not fit
        check_folder_output(args.output)
        check_outputs([args.output, *outputs], [*inputs, *config_inputs(args.config_file, cfg)], image_folders)
        model = build_inference_model(cfg)

    points = run_sweep(cfg, model, args.sizes, native_precisions(cfg.train.device))
    report = sweep_report(points, cfg, args.config_file)
    print(report)
    shown_names = dataset_names if isinstance(dataset_names, str) else ", ".join(dataset_names)
    title = f"{os.path.basename(args.config_file)} on {shown_names}, {cfg.train.device}"
    try:
        written = write_outputs(points, report, title, args.output)
    except OSError as e:
        logger.error("%s", e)
        return 1
    logger.info(f"Wrote {' and '.join(written)}")
    return 0


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
