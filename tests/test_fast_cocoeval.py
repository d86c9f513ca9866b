"""FastCOCOeval and FastCOCOEvaluator give exactly pycocotools' COCOeval results."""
import contextlib
import io
import json
import logging

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation import COCOEvaluator, coco_evaluation
from detectron2.structures import Boxes, Instances
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks import evaluation as benchmark
from benchmarks.evaluation import synthetic_coco
from yolos_d2.evaluation import FastCOCOEvaluator, FastCOCOeval


def run_both(coco_gt, coco_dt, iou_type="bbox", max_dets=None, use_cats=1):
    """pycocotools' and FastCOCOeval's evaluators after evaluate, accumulate and summarize."""
    evaluators = []
    for cls in (COCOeval, FastCOCOeval):
        evaluator = cls(coco_gt, coco_dt, iou_type)
        evaluator.params.useCats = use_cats
        if max_dets is not None:
            evaluator.params.maxDets = max_dets
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        evaluators.append(evaluator)
    return evaluators


def assert_same_results(reference, fast):
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(fast.eval[key], reference.eval[key]), key
    assert np.array_equal(fast.stats, reference.stats)


@pytest.mark.parametrize(
    "problem",
    [
        dict(num_images=30, num_categories=10),
        dict(num_images=8, num_categories=2, dets_per_image=150),  # over 100 per (image, category)
        dict(num_images=40, num_categories=20, gts_per_image=0.7),  # images and categories without ground truths
        dict(num_images=20, num_categories=5, crowd_fraction=0.4),
    ],
)
@pytest.mark.parametrize("use_cats", [1, 0])
def test_synthetic_problems_equal_pycocotools(problem, use_cats):
    reference, fast = run_both(*synthetic_coco(**problem, seed=1), use_cats=use_cats)
    assert_same_results(reference, fast)
    assert reference.stats[0] > 0.05


# Few boxes, so that detections and ground truths coincide and overlap with equal IoUs (a 32x32
# detection and the 32x24 boxes at its top and bottom: 0.75 each), at small, medium and large sizes
# and on their bounds (32**2, 96**2).
_BASE_BOXES = [(0, 0, 32, 32), (0, 0, 32, 24), (0, 8, 32, 24), (0, 0, 24, 32), (8, 0, 24, 32)]
_boxes = st.sampled_from([tuple(scale * v for v in box) for scale in (1, 2, 3) for box in _BASE_BOXES])


@st.composite
def coco_problems(draw):
    """Tiny random COCO ground truths and detections with ties, crowds and empty images and categories."""
    num_images, num_categories = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    image_ids, category_ids = st.integers(1, num_images), st.integers(1, num_categories)
    gts = draw(st.lists(st.tuples(image_ids, category_ids, _boxes, st.booleans()), max_size=10))
    scores = st.sampled_from([0.2, 0.5, 0.9])
    dets = draw(st.lists(st.tuples(image_ids, category_ids, _boxes, scores), min_size=1, max_size=14))
    first_id = draw(st.integers(0, 1))  # pycocotools counts a match to the ground truth of id 0 as none
    coco_gt = COCO()
    coco_gt.dataset = {
        "images": [{"id": i, "height": 200, "width": 200} for i in range(1, num_images + 1)],
        "categories": [{"id": k} for k in range(1, num_categories + 1)],
        "annotations": [
            dict(id=first_id + i, image_id=image, category_id=c, bbox=list(b), area=b[2] * b[3], iscrowd=int(crowd))
            for i, (image, c, b, crowd) in enumerate(gts)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(
            [{"image_id": image, "category_id": c, "bbox": list(box), "score": score} for image, c, box, score in dets]
        )
    return coco_gt, coco_dt


@settings(max_examples=150, deadline=None, database=None)
@given(problem=coco_problems(), max_dets=st.sampled_from([[1, 10, 100], [1, 2, 3]]), use_cats=st.sampled_from([1, 0]))
def test_random_tiny_problems_equal_pycocotools(problem, max_dets, use_cats):
    assert_same_results(*run_both(*problem, max_dets=max_dets, use_cats=use_cats))


def test_segmentation_runs_pycocotools_code():
    coco_gt, coco_dt = synthetic_coco(num_images=6, num_categories=3, dets_per_image=20)
    for ann in coco_gt.dataset["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    reference, fast = run_both(coco_gt, coco_dt, iou_type="segm")
    assert_same_results(reference, fast)
    assert len(fast.evalImgs) == len(reference.evalImgs)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """A registered 12-image COCO-format dataset (image files are not needed) and detections on it."""
    coco_gt, coco_dt = synthetic_coco(num_images=12, num_categories=4, dets_per_image=30)
    name = "fast_cocoeval_tiny"
    if name not in DatasetCatalog.list():
        json_file = tmp_path_factory.mktemp("coco") / "annotations.json"
        json_file.write_text(json.dumps(coco_gt.dataset))
        register_coco_instances(name, {}, str(json_file), str(json_file.parent))
        DatasetCatalog.get(name)  # sets thing_classes and the category id map
    return name, coco_dt


def evaluate(evaluator, coco_dt):
    """Feed ``evaluator`` the detections of ``coco_dt`` as model outputs (class = category id - 1)."""
    evaluator.reset()
    for image_id, anns in coco_dt.imgToAnns.items():
        instances = Instances((480, 640))
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32)
        instances.pred_boxes = Boxes(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1))
        instances.scores = torch.tensor([a["score"] for a in anns])
        instances.pred_classes = torch.tensor([a["category_id"] - 1 for a in anns])
        evaluator.process([{"image_id": image_id}], [{"instances": instances}])
    with contextlib.redirect_stdout(io.StringIO()):
        return evaluator.evaluate()


@pytest.mark.parametrize("max_dets_per_image", [None, 20])
def test_detectron2_evaluator_equals_official_api(tiny_dataset, caplog, max_dets_per_image):
    name, coco_dt = tiny_dataset
    caplog.set_level(logging.INFO, logger="yolos_d2.evaluation.fast_cocoeval")
    official = evaluate(COCOEvaluator(name, max_dets_per_image=max_dets_per_image, use_fast_impl=False), coco_dt)
    assert "FastCOCOeval" not in caplog.text
    fast = evaluate(FastCOCOEvaluator(name, max_dets_per_image=max_dets_per_image), coco_dt)
    assert "FastCOCOeval.evaluate() finished" in caplog.text
    assert coco_evaluation.COCOeval is COCOeval  # restored
    np.testing.assert_equal(fast, official)  # NaN per-category APs included
    assert set(fast["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"} | {f"AP-class{k}" for k in range(1, 5)}
    assert fast["bbox"]["AP"] > 5


def test_benchmark_finds_identical_stats():
    result = benchmark.run(images=6, categories=3, gts=2.0, dets=10, repeats=1, seed=0)
    assert [row.name for row in result.rows] == ["pycocotools COCOeval", "FastCOCOeval"]
    assert result.max_stats_difference == 0
    assert result.rows[0].ap == result.rows[1].ap
