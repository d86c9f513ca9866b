"""
Data of COCO's size, from one run: loading a synthetic annotation file of COCO train2017's counts
with yolos_d2's checks against detectron2's ``load_coco_json``, the check that its image files
exist, and the evaluation of 5,000 images' detections by pycocotools and by faster-coco-eval
(which :class:`yolos_d2.evaluation.FastCOCOEvaluator` runs)::

    python -m benchmarks coco-scale [--images 118287] [--eval-images 5000] [--lookup-ms 1]

The annotation file (written to a temporary folder, with an empty file for each image) has a
polygon of 6 to 38 points per box: COCO's file size. Each loader and each evaluator runs in a
fresh process (forked from one that imported them) and is measured there: its seconds, and its
peak memory, the most the process's resident memory rose above its level before (Linux's VmHWM,
reset first). The loaders' dataset dicts are compared record by record. The image-file check is
timed in this process with one thread and with yolos_d2's ``FILE_CHECK_THREADS``, on the local
files and with each look-up delayed by ``--lookup-ms``, as storage over a network delays it.
Ratios are to the first row of each part.
"""
import argparse
import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import pathlib
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple
from unittest import mock

import numpy as np
from detectron2.data.datasets import load_coco_json
from faster_coco_eval import COCO as FasterCOCO
from faster_coco_eval import COCOeval_faster
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolos_d2.data import validation
from yolos_d2.tools import cli
from yolos_d2.utils.table import format_table
from .evaluation import evaluate_and_accumulate, synthetic_coco
from .timing import Timing, timings

__all__ = [
    "COCO_TRAIN2017_BOXES",
    "COCO_TRAIN2017_IMAGES",
    "ScaleResult",
    "ScaleTiming",
    "main",
    "run",
    "write_coco_json",
]

COCO_TRAIN2017_IMAGES = 118_287
COCO_TRAIN2017_BOXES = 860_001
# (width, height) of the synthetic images: COCO's commonest sizes.
_IMAGE_SIDES = np.array([[640, 480], [480, 640], [640, 427], [500, 375], [640, 640]])
# Annotations generated and written at a time.
_ANNOTATIONS_PER_CHUNK = 20_000

# Loader name -> function of (json file, image root, dataset name) giving dataset dicts.
LOADERS: Dict[str, Callable[[str, str, str], List[Dict]]] = {
    "detectron2 load_coco_json": partial(load_coco_json, extra_annotation_keys=["id"]),
    "yolos_d2 load_checked_coco_json": validation.load_checked_coco_json,
}
# Evaluator name -> (its library's COCO class, its evaluator class).
EVALUATORS = {
    "pycocotools COCOeval": (COCO, COCOeval),
    "faster_coco_eval COCOeval_faster": (FasterCOCO, COCOeval_faster),
}


def write_coco_json(path: str, images: int, boxes: int, categories: int = 80, seed: int = 0) -> List[str]:
    """
    Write a random COCO-format detection json to ``path``: ``images`` images of COCO's sizes with
    ids drawn from 1 to 5 x ``images`` (listed unsorted), ``boxes`` annotations with ids 1 to
    ``boxes`` on random images (in no image order), each a box of 2 to 60 % of its image's sides
    and a polygon of 6 to 38 points (2 decimals) inside it, of ``categories`` categories with ids
    1 to ``categories``.

    Returns:
        the images' file names, in the file's order.
    """
    rng = np.random.default_rng(seed)
    sides = _IMAGE_SIDES[rng.integers(0, len(_IMAGE_SIDES), images)]
    image_ids = (rng.permutation(5 * images)[:images] + 1).tolist()
    file_names = [f"{image_id:012d}.jpg" for image_id in image_ids]
    image_entries = [
        {"id": image_id, "file_name": name, "width": width, "height": height}
        for image_id, name, (width, height) in zip(image_ids, file_names, sides.tolist())
    ]
    with open(path, "w") as f:
        f.write('{"images": ' + json.dumps(image_entries) + ', "annotations": [')
        for first in range(0, boxes, _ANNOTATIONS_PER_CHUNK):
            count = min(_ANNOTATIONS_PER_CHUNK, boxes - first)
            chunk = _random_annotations(rng, count, first + 1, image_ids, sides, categories)
            f.write((", " if first else "") + json.dumps(chunk)[1:-1])
        categories_json = json.dumps([{"id": k, "name": f"class{k}"} for k in range(1, categories + 1)])
        f.write('], "categories": ' + categories_json + "}")
    return file_names


def _random_annotations(
    rng: np.random.Generator, count: int, first_id: int, image_ids: List[int], sides: np.ndarray, categories: int
) -> List[Dict]:
    """
    ``count`` annotations of :func:`write_coco_json`, with ids from ``first_id``, on random images
    of ``image_ids``, whose (width, height) are ``sides``.
    """
    owner = rng.integers(0, len(image_ids), count)
    size = rng.uniform(0.02, 0.6, (count, 2)) * sides[owner]
    corner = rng.uniform(0, 1, (count, 2)) * (sides[owner] - size)
    points = rng.integers(6, 39, count)
    point_owner = np.repeat(np.arange(count), points)
    # Points around each box's centre, in the order of their angles (a star-shaped polygon).
    angle = np.sort(rng.uniform(0, 2 * np.pi, len(point_owner)) + 2 * np.pi * point_owner) - 2 * np.pi * point_owner
    radius = rng.uniform(0.7, 1.0, len(point_owner))[:, None] * size[point_owner] / 2
    xy = corner[point_owner] + size[point_owner] / 2 + radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    polygons = np.split(xy.round(2).reshape(-1), np.cumsum(2 * points)[:-1])
    boxes = np.concatenate([corner, size], axis=1).round(2)
    areas = (size.prod(axis=1) * 0.7).round(3)
    category_ids = rng.integers(1, categories + 1, count)
    return [
        {
            "segmentation": [polygon.tolist()],
            "area": area,
            "iscrowd": 0,
            "image_id": image_ids[image],
            "bbox": box,
            "category_id": category_id,
            "id": first_id + k,
        }
        for k, (polygon, area, image, box, category_id) in enumerate(
            zip(polygons, areas.tolist(), owner.tolist(), boxes.tolist(), category_ids.tolist())
        )
    ]


def _memory_bytes(field: str) -> int:
    """A memory figure of this process from Linux's /proc/self/status: "VmRSS" (resident now), "VmHWM" (its peak)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(f"{field}:"))
    return int(line.split()[1]) * 1024  # in kB


def _measured(fn: Callable[[], object]) -> Tuple[float, int, object]:
    """``fn()``'s seconds, the most the resident memory rose above its level before (bytes), and its result."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident memory to the memory now
    before = _memory_bytes("VmRSS")
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return seconds, _memory_bytes("VmHWM") - before, result


def _load(loader: str, json_file: str, image_root: str) -> Tuple[float, int, str]:
    """In a fresh process: the seconds and peak memory of loading with ``loader``, and a digest of the dicts."""
    seconds, peak, dataset_dicts = _measured(partial(LOADERS[loader], json_file, image_root, f"coco_scale {loader}"))
    digest = hashlib.sha256()
    for record in dataset_dicts:
        digest.update(repr(record).encode())
    return seconds, peak, digest.hexdigest()


def _evaluate(evaluator: str, gt_file: str, dt_file: str) -> Tuple[float, int]:
    """In a fresh process: the seconds and peak memory of ``evaluator``'s ``evaluate()`` and ``accumulate()``."""
    coco_class, evaluator_class = EVALUATORS[evaluator]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress
        coco_gt = coco_class(gt_file)
        coco_dt = coco_gt.loadRes(dt_file)
    seconds, peak, _ = _measured(partial(evaluate_and_accumulate, evaluator_class, coco_gt, coco_dt))
    return seconds, peak


def _in_fresh_processes(fn: Callable, calls: Dict[str, tuple]) -> Dict[str, tuple]:
    """name -> ``fn(*args)`` for each name -> args of ``calls``, one after the other, each in a new process."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["yolos_d2", __name__])  # yolos_d2 first: it silences harmless warnings
    with context.Pool(1, maxtasksperchild=1) as pool:
        return {name: pool.apply(fn, args) for name, args in calls.items()}


def _file_check_seconds(file_names: List[str], threads: int, lookup_seconds: float) -> float:
    """Seconds of ``check_image_files`` with ``threads`` threads, each look-up delayed by ``lookup_seconds``."""
    is_file = os.path.isfile

    def delayed_is_file(path):
        time.sleep(lookup_seconds)
        return is_file(path)

    records = [{"file_name": name} for name in file_names]
    with mock.patch.object(validation, "FILE_CHECK_THREADS", threads), mock.patch.object(
        os.path, "isfile", delayed_is_file if lookup_seconds else is_file
    ):
        start = time.perf_counter()
        validation.check_image_files(records, "coco_scale")
        return time.perf_counter() - start


@dataclass(frozen=True)
class ScaleTiming(Timing):
    """
    A row of ``part`` (its ``ratio`` is to the part's first row): ``peak_bytes``, the most the
    resident memory of its process rose while it ran, and ``memory_ratio``, that over the first
    row's (both None where not measured).
    """

    part: str
    peak_bytes: Optional[int]
    memory_ratio: Optional[float]


@dataclass(frozen=True)
class ScaleResult:
    """The ``rows``, the annotation file's size in bytes, and whether both loaders gave equal dataset dicts."""

    rows: List[ScaleTiming]
    json_bytes: int
    same_dataset_dicts: bool


def _rows(part: str, measured: Dict[str, tuple]) -> List[ScaleTiming]:
    """``part``'s rows from name -> (seconds, peak bytes or None, ...), each with its ratios to the first."""
    seconds = {name: values[0] for name, values in measured.items()}
    peaks = {name: values[1] for name, values in measured.items()}
    reference = next(iter(measured))
    memory_ratios = {name: peak / peaks[reference] if peak is not None and peaks[reference] else None
                     for name, peak in peaks.items()}
    return timings(seconds, reference, ScaleTiming, part={n: part for n in seconds}, peak_bytes=peaks,
                   memory_ratio=memory_ratios)


def run(
    images: int, boxes: int, categories: int, eval_images: int, dets: int, lookup_seconds: float, seed: int
) -> ScaleResult:
    """
    Measure the loaders, the image-file check and the evaluators on a :func:`write_coco_json`
    file of these counts and :func:`~benchmarks.evaluation.synthetic_coco` detections of
    ``eval_images`` images x ``dets``, in a temporary folder.
    """
    with tempfile.TemporaryDirectory(prefix="coco_scale_") as folder:
        json_file, image_root = os.path.join(folder, "instances.json"), os.path.join(folder, "images")
        os.makedirs(image_root)
        file_names = write_coco_json(json_file, images, boxes, categories, seed)
        file_names = [os.path.join(image_root, name) for name in file_names]
        for name in file_names:
            pathlib.Path(name).touch()
        loaded = _in_fresh_processes(_load, {loader: (loader, json_file, image_root) for loader in LOADERS})
        rows = _rows("loading", loaded)
        rows += _image_check_rows("image check, local files", file_names, 0.0)
        rows += _image_check_rows(f"image check, {lookup_seconds * 1e3:g} ms per file", file_names, lookup_seconds)
        gt_file, dt_file = _write_evaluation_files(folder, eval_images, categories, dets, seed)
        evaluated = _in_fresh_processes(_evaluate, {name: (name, gt_file, dt_file) for name in EVALUATORS})
        rows += _rows("evaluation", evaluated)
        digests = {digest for _, _, digest in loaded.values()}
        return ScaleResult(rows, os.path.getsize(json_file), same_dataset_dicts=len(digests) == 1)


def _image_check_rows(part: str, file_names: List[str], lookup_seconds: float) -> List[ScaleTiming]:
    """The image-file check's rows of ``part``: one thread, then yolos_d2's threads."""
    measured = {}
    for threads in (1, validation.FILE_CHECK_THREADS):
        measured[f"{threads} thread{'s' if threads > 1 else ''}"] = (
            _file_check_seconds(file_names, threads, lookup_seconds), None
        )
    return _rows(part, measured)


def _write_evaluation_files(folder: str, images: int, categories: int, dets: int, seed: int) -> Tuple[str, str]:
    """The ground truth (COCO json) and detections (results json) of ``synthetic_coco`` written to ``folder``."""
    coco_gt, coco_dt = synthetic_coco(images, categories, dets_per_image=dets, seed=seed)
    gt_file, dt_file = os.path.join(folder, "ground_truth.json"), os.path.join(folder, "detections.json")
    with open(gt_file, "w") as f:
        json.dump(coco_gt.dataset, f)
    results = [{k: d[k] for k in ("image_id", "category_id", "bbox", "score")} for d in coco_dt.dataset["annotations"]]
    with open(dt_file, "w") as f:
        json.dump(results, f)
    return gt_file, dt_file


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks coco-scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--images",
        type=cli.positive_int,
        default=COCO_TRAIN2017_IMAGES,
        metavar="N",
        help=f"images of the annotation file (default {COCO_TRAIN2017_IMAGES}, COCO train2017's)",
    )
    parser.add_argument(
        "--boxes",
        type=cli.non_negative_int,
        metavar="N",
        help=f"annotations of the annotation file (default: COCO train2017's {COCO_TRAIN2017_BOXES} for its "
        f"{COCO_TRAIN2017_IMAGES} images, as many per image for other --images)",
    )
    parser.add_argument(
        "--categories", type=cli.positive_int, default=80, metavar="N", help="object categories (default 80)"
    )
    parser.add_argument(
        "--eval-images", type=cli.positive_int, default=5000, metavar="N", help="images evaluated (default 5000)"
    )
    parser.add_argument(
        "--dets", type=cli.positive_int, default=100, metavar="N", help="detections per evaluated image (default 100)"
    )
    parser.add_argument(
        "--lookup-ms",
        type=cli.positive_number,
        default=1.0,
        metavar="MS",
        help="milliseconds each image-file look-up is delayed by in the timing of slow storage (default 1)",
    )
    parser.add_argument(
        "--seed", type=cli.non_negative_int, default=0, help="seed of the random data, 0 or more (default 0)"
    )
    args = parser.parse_args(argv)
    boxes = args.boxes if args.boxes is not None else round(args.images * COCO_TRAIN2017_BOXES / COCO_TRAIN2017_IMAGES)
    result = run(args.images, boxes, args.categories, args.eval_images, args.dets, args.lookup_ms / 1e3, args.seed)

    equal = "yes" if result.same_dataset_dicts else "NO"
    print(
        f"{args.images} images, {boxes} boxes with polygons, {args.categories} categories: a "
        f"{result.json_bytes / 2**20:.0f} MiB json; equal dataset dicts: {equal}. "
        f"Evaluation: {args.eval_images} images x {args.dets} detections"
    )
    rows = [
        [
            row.part,
            row.name,
            f"{row.seconds:.3f}",
            f"{row.ratio:.2f}",
            "-" if row.peak_bytes is None else f"{row.peak_bytes / 2**20:.0f}",
            "-" if row.memory_ratio is None else f"{row.memory_ratio:.2f}",
        ]
        for row in result.rows
    ]
    print(format_table(["part", "implementation", "seconds", "ratio", "peak MiB", "memory ratio"], rows))
