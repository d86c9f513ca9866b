"""
Images per second that one data-loader worker maps, with each variant's training mapper (DETR's
augmentation: decode, flip, multi-scale resize or resize-crop-resize, boxes) and test mapper
(decode, resize), on COCO-like 640x480 JPEGs, in this process::

    python -m benchmarks data-loading [--images 200] [--configs configs/yolos_ti.py configs/yolos_s.py]

The JPEGs (smooth random pictures, quality 90, 7 boxes each) are written to a temporary folder
first; each mapper then maps every image once after a warm-up of 10, timed. A training step of
``B`` images per GPU taking ``S`` seconds needs ``B / S`` images per second per GPU, so
``ceil(B / (S x rate))`` workers per GPU keep it fed; the table under the rates gives that count
for the step times of ``--step-seconds``.
"""
import argparse
import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import numpy as np
from detectron2.config import instantiate
from detectron2.structures import BoxMode
from PIL import Image

from yolos_d2.config import load_config
from yolos_d2.tools import cli
from .onnx_pipeline import smooth_image
from yolos_d2.utils.table import format_table

__all__ = ["run", "main", "write_jpegs"]

DEFAULT_CONFIGS = ["configs/yolos_ti.py", "configs/yolos_s.py", "configs/yolos_b.py"]
STEP_SECONDS = [0.01, 0.025, 0.05, 0.1]


def write_jpegs(folder: str, count: int, size=(480, 640), boxes_per_image: int = 7) -> List[Dict]:
    """``count`` (H, W) ``size`` JPEGs written to ``folder``, and their dataset dicts with random boxes."""
    rng = np.random.default_rng(0)
    height, width = size
    records = []
    for i in range(count):
        path = os.path.join(folder, f"{i:06d}.jpg")
        Image.fromarray(smooth_image(height, width, seed=i)).save(path, quality=90)
        corners = rng.uniform(0, 1, (boxes_per_image, 2, 2)) * [width, height]
        x0y0, x1y1 = corners.min(1), corners.max(1) + 8
        annotations = [
            {"bbox": [*a, *b], "bbox_mode": BoxMode.XYXY_ABS, "category_id": int(rng.integers(80)), "iscrowd": 0}
            for a, b in zip(x0y0.tolist(), np.minimum(x1y1, [width, height]).tolist())
        ]
        records.append({"file_name": path, "height": height, "width": width, "image_id": i, "annotations": annotations})
    return records


def images_per_second(mapper: Callable[[Dict], Dict], records: List[Dict], warmup: int = 10) -> float:
    for record in records[:warmup]:
        mapper(dict(record))
    start = time.perf_counter()
    for record in records:
        mapper(dict(record))
    return len(records) / (time.perf_counter() - start)


@dataclass(frozen=True)
class LoadingRow:
    """
    A config's mappers: images per second of its training and test mappers in one process, its
    images per GPU per step (its total batch over 8 GPUs), and the workers per GPU that keep a
    step of each of the benchmark's step times fed.
    """

    config: str
    train_rate: float
    test_rate: float
    images_per_gpu: int
    workers: List[int]


def run(configs: Sequence[str], images: int, step_seconds: Sequence[float]) -> List[LoadingRow]:
    """Time each config's training and test mappers on ``images`` JPEGs; workers for each of ``step_seconds``."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="data_loading_") as folder:
        records = write_jpegs(folder, images)
        for config_file in configs:
            cfg = load_config(config_file)
            train_rate, test_rate = (
                images_per_second(instantiate(cfg.dataloader[split].mapper), records) for split in ("train", "test")
            )
            # Images per GPU per step: the config's total batch over 8 GPUs, as the paper trains.
            per_gpu = max(1, cfg.dataloader.train.total_batch_size // 8)
            workers = [math.ceil(per_gpu / (s * train_rate)) for s in step_seconds]
            rows.append(LoadingRow(os.path.basename(config_file), train_rate, test_rate, per_gpu, workers))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks data-loading", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=DEFAULT_CONFIGS,
        metavar="FILE",
        help=f"LazyConfigs whose mappers are timed, a row each (default {' '.join(DEFAULT_CONFIGS)})",
    )
    parser.add_argument(
        "--images",
        type=cli.positive_int,
        default=200,
        metavar="N",
        help="JPEGs written, then mapped once by every mapper (default 200)",
    )
    parser.add_argument(
        "--step-seconds",
        nargs="+",
        type=cli.positive_number,
        default=STEP_SECONDS,
        metavar="SECONDS",
        help="training step times to count the workers for, a column each "
        f"(default {' '.join(map(str, STEP_SECONDS))})",
    )
    args = parser.parse_args(argv)
    with cli.usage_errors(parser):  # a config that does not load: before the JPEGs are written
        for config_file in args.configs:
            load_config(config_file)
    rows = run(args.configs, args.images, args.step_seconds)

    print(f"{args.images} JPEGs of 640x480, one process")
    rates = [[row.config, f"{row.train_rate:.1f}", f"{row.test_rate:.1f}"] for row in rows]
    print(format_table(["config", "training mapper, images/s", "test mapper, images/s"], rates))
    header = ["config", "images per GPU (8 GPUs)", *(f"workers per GPU at {s:g} s/step" for s in args.step_seconds)]
    print(format_table(header, [[row.config, row.images_per_gpu, *row.workers] for row in rows]))
