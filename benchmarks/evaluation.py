"""
Speed of faster-coco-eval's ``COCOeval_faster`` (what :class:`yolos_d2.evaluation.FastCOCOEvaluator`
runs) against pycocotools' ``COCOeval`` on a synthetic COCO-like problem, timed interleaved in
one process::

    python -m benchmarks evaluation [--images 500 --dets 100 --repeats 3]

Each timed call builds the evaluator (over COCO objects of its own library, built beforehand)
and runs ``evaluate()`` and ``accumulate()`` on boxes; ``summarize()`` (a few milliseconds) is
run once afterwards for the AP and is not timed. The table gives the median seconds, the ratio
to pycocotools and the AP; the line under it the largest difference between the two's 12
summary numbers.
"""
import argparse
import contextlib
import copy
import io
from dataclasses import dataclass
from functools import partial
from typing import List, Tuple

import faster_coco_eval
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolos_d2.tools import cli
from yolos_d2.utils.table import format_table
from .timing import Timing, add_repeats_argument, time_interleaved, timings

__all__ = ["synthetic_coco", "run", "main"]

_IMAGE_SIZE = (480, 640)  # H, W


def synthetic_coco(
    num_images: int = 500,
    num_categories: int = 80,
    gts_per_image: float = 7.0,
    dets_per_image: int = 100,
    crowd_fraction: float = 0.05,
    seed: int = 0,
) -> Tuple[COCO, COCO]:
    """
    Ground truths and detections of a random COCO-like problem on 640x480 images.

    Each image has a Poisson(``gts_per_image``) number of ground-truth boxes (x, y, w, h absolute)
    of sides from 4 to 320 pixels (small, medium and large), random categories, an ``area`` of 50
    to 100 % of the box's, and a ``crowd_fraction`` of them crowds. It has ``dets_per_image``
    detections: half noisy copies of its ground truths (mostly of their category, scores in
    [0.3, 1]), half random boxes (scores in [0, 0.6]); scores are rounded to 3 decimals, so some
    tie.

    Returns:
        (ground truth, detections), as pycocotools ``COCO`` objects.
    """
    rng = np.random.default_rng(seed)
    height, width = _IMAGE_SIZE

    def random_boxes(n):
        size = np.exp(rng.uniform(np.log(4), np.log(320), (n, 2)))
        corner = rng.uniform(0, 1, (n, 2)) * ([width, height] - size)
        return np.concatenate([corner, size], axis=1).round(2)

    images, gts, dets = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.jpg"})
        num_gts = rng.poisson(gts_per_image)
        boxes, categories = random_boxes(num_gts), rng.integers(1, num_categories + 1, num_gts)
        for box, category in zip(boxes, categories):
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": image_id,
                    "category_id": int(category),
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3] * rng.uniform(0.5, 1)),
                    "iscrowd": int(rng.random() < crowd_fraction),
                }
            )
        copies = rng.random(dets_per_image) < 0.5 if num_gts else np.zeros(dets_per_image, dtype=bool)
        source = rng.integers(0, max(num_gts, 1), dets_per_image)
        det_boxes = random_boxes(dets_per_image)
        originals = boxes[source[copies]]
        det_boxes[copies] = originals + rng.normal(0, 0.1, originals.shape) * np.tile(originals[:, 2:], 2)
        det_categories = rng.integers(1, num_categories + 1, dets_per_image)
        keep_category = copies & (rng.random(dets_per_image) < 0.9)
        det_categories[keep_category] = categories[source[keep_category]]
        det_scores = np.where(copies, rng.uniform(0.3, 1, dets_per_image), rng.uniform(0, 0.6, dets_per_image))
        for box, category, score in zip(det_boxes, det_categories, det_scores.round(3)):
            dets.append(
                {"image_id": image_id, "category_id": int(category), "bbox": box.tolist(), "score": float(score)}
            )

    coco_gt = COCO()
    coco_gt.dataset = {
        "images": images,
        "annotations": gts,
        "categories": [{"id": k, "name": f"class{k}"} for k in range(1, num_categories + 1)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
    return coco_gt, coco_dt


def evaluate_and_accumulate(cls, coco_gt, coco_dt):
    """A ``cls`` (a ``COCOeval`` class) evaluator of boxes after ``evaluate()`` and ``accumulate()``, silenced."""
    evaluator = cls(coco_gt, coco_dt, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def faster_coco_eval_coco(coco: COCO) -> faster_coco_eval.COCO:
    """faster-coco-eval's ``COCO`` of a copy of the annotations of pycocotools' ``coco``."""
    return faster_coco_eval.COCO(copy.deepcopy(coco.dataset))


@dataclass(frozen=True)
class EvaluationTiming(Timing):
    """An evaluator's seconds for ``evaluate()`` and ``accumulate()`` (``ratio`` against pycocotools') and its AP."""

    ap: float


@dataclass(frozen=True)
class EvaluationResult:
    """
    The evaluators' ``rows``, the problem's numbers of ground truths and detections, and the
    largest absolute difference between the two's 12 summary numbers (AP, AR).
    """

    rows: List[EvaluationTiming]
    ground_truths: int
    detections: int
    max_stats_difference: float


def run(images: int, categories: int, gts: float, dets: int, repeats: int, seed: int) -> EvaluationResult:
    """Time both evaluators on :func:`synthetic_coco` (these arguments), and summarise each once."""
    coco_gt, coco_dt = synthetic_coco(images, categories, gts, dets, seed=seed)
    implementations = {
        "pycocotools COCOeval": (COCOeval, coco_gt, coco_dt),
        "faster-coco-eval COCOeval_faster": (
            partial(faster_coco_eval.COCOeval_faster, print_function=lambda *_: None),
            faster_coco_eval_coco(coco_gt),
            faster_coco_eval_coco(coco_dt),
        ),
    }
    times = time_interleaved(
        {name: partial(evaluate_and_accumulate, *arguments) for name, arguments in implementations.items()},
        repeats=repeats,
        warmup=1,
    )
    stats = {}
    for name, arguments in implementations.items():
        evaluator = evaluate_and_accumulate(*arguments)
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.summarize()
        stats[name] = evaluator.stats
    aps = {name: float(summary[0]) for name, summary in stats.items()}
    reference, faster = stats.values()
    return EvaluationResult(
        rows=timings(times, "pycocotools COCOeval", EvaluationTiming, ap=aps),
        ground_truths=len(coco_gt.anns),
        detections=len(coco_dt.anns),
        max_stats_difference=float(np.abs(faster - reference).max()),
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=cli.positive_int, default=500, metavar="N", help="synthetic images (default 500)"
    )
    parser.add_argument(
        "--categories", type=cli.positive_int, default=80, metavar="N", help="object categories (default 80)"
    )
    parser.add_argument(
        "--gts",
        type=cli.positive_number,
        default=7.0,
        metavar="MEAN",
        help="mean ground-truth boxes per image; each image's count is drawn from a Poisson of it (default 7)",
    )
    parser.add_argument(
        "--dets", type=cli.positive_int, default=100, metavar="N", help="detections per image (default 100)"
    )
    add_repeats_argument(parser, default=3)
    parser.add_argument(
        "--seed", type=cli.non_negative_int, default=0, help="seed of the random problem, 0 or more (default 0)"
    )
    args = parser.parse_args(argv)
    result = run(args.images, args.categories, args.gts, args.dets, args.repeats, args.seed)

    print(
        f"{args.images} images, {args.categories} categories, {result.ground_truths} ground truths, "
        f"{result.detections} detections; evaluate() + accumulate(), median of {args.repeats}"
    )
    rows = [[row.name, f"{row.seconds:.3f}", f"{row.ratio:.3f}", f"{row.ap:.6f}"] for row in result.rows]
    print(format_table(["implementation", "seconds", "ratio", "AP"], rows))
    print(f"max |difference| of the 12 summary numbers (AP, AR): {result.max_stats_difference:.3g}")
