"""
faster-coco-eval's COCOeval, and FastCOCOEvaluator running it, give pycocotools' COCOeval
results: the same arrays and summaries, to the last bits of a double.
"""
import contextlib
import copy
import io
import json
import logging
from functools import partial

import faster_coco_eval
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation.coco_evaluation import COCOevalMaxDets
from detectron2.structures import Boxes, Instances
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks.evaluation import faster_coco_eval_coco, synthetic_coco
from yolos_d2.evaluation import FastCOCOEvaluator

EPS = np.finfo(np.float64).eps
# pycocotools divides by tp + fp + eps, faster-coco-eval by tp + fp: a precision differs by at
# most one eps (1 - eps instead of 1 where tp + fp = 1) and its rounding, recall and scores not at all.
PRECISION_RTOL = 2 * EPS
# A mean of n such precisions: theirs, plus numpy's pairwise summation (log2(n) eps; n < 2**32).
MEAN_RTOL = (2 + 32) * EPS
# Other area ranges than COCO's (small, medium, large), with bounds on the test boxes' areas.
AREA_RANGES = ([[0, 1e10], [0, 32 * 32], [32 * 32, 64 * 96], [64 * 96, 1e10]], ["all", "a", "b", "c"])


def evaluated(cls, coco_gt, coco_dt, iou_type, max_dets, use_cats, area_ranges):
    """A ``cls`` (a ``COCOeval`` class) evaluator after evaluate, accumulate and summarize, silenced."""
    evaluator = cls(coco_gt, coco_dt, iou_type)
    evaluator.params.useCats = use_cats
    if max_dets is not None:
        evaluator.params.maxDets = max_dets
    if area_ranges is not None:
        evaluator.params.areaRng, evaluator.params.areaRngLbl = copy.deepcopy(area_ranges)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def assert_same_as_pycocotools(coco_gt, coco_dt, iou_type="bbox", max_dets=None, use_cats=1, area_ranges=None):
    """
    faster-coco-eval's ``COCOeval_faster`` gives pycocotools' precision, recall and scores, and
    the summary of pycocotools' ``COCOeval``, or, with a largest ``max_dets`` other than 100,
    detectron2's ``COCOevalMaxDets`` (pycocotools' summarising at it). Returns pycocotools' evaluator.
    """
    largest_max_dets = (max_dets or [100])[-1]
    reference = evaluated(
        COCOeval if largest_max_dets == 100 else COCOevalMaxDets,
        coco_gt,
        coco_dt,
        iou_type,
        max_dets,
        use_cats,
        area_ranges,
    )
    faster = evaluated(
        partial(faster_coco_eval.COCOeval_faster, print_function=lambda *_: None),
        faster_coco_eval_coco(coco_gt),
        faster_coco_eval_coco(coco_dt),
        iou_type,
        max_dets,
        use_cats,
        area_ranges,
    )
    np.testing.assert_allclose(faster.eval["precision"], reference.eval["precision"], rtol=PRECISION_RTOL, atol=0)
    for key in ("recall", "scores"):
        assert np.array_equal(faster.eval[key], reference.eval[key]), key
    if area_ranges is None:  # pycocotools summarises COCO's area ranges only
        np.testing.assert_allclose(faster.stats, reference.stats, rtol=MEAN_RTOL, atol=0)
    return reference


@pytest.mark.parametrize(
    "problem",
    [
        {"num_images": 30, "num_categories": 10},
        {"num_images": 8, "num_categories": 2, "dets_per_image": 150},  # over 100 per (image, category)
        {"num_images": 40, "num_categories": 20, "gts_per_image": 0.7},  # images and categories without ground truths
        {"num_images": 20, "num_categories": 5, "crowd_fraction": 0.4},
    ],
)
@pytest.mark.parametrize("use_cats", [1, 0])
def test_synthetic_problems_equal_pycocotools(problem, use_cats):
    reference = assert_same_as_pycocotools(*synthetic_coco(**problem, seed=1), use_cats=use_cats)
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
            {
                "id": first_id + i,
                "image_id": image,
                "category_id": c,
                "bbox": list(b),
                "area": b[2] * b[3],
                "iscrowd": int(crowd),
            }
            for i, (image, c, b, crowd) in enumerate(gts)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(
            [{"image_id": image, "category_id": c, "bbox": list(box), "score": score} for image, c, box, score in dets]
        )
    return coco_gt, coco_dt


@pytest.mark.filterwarnings("ignore:Found annotation id 0:UserWarning")
@settings(max_examples=150, deadline=None, database=None)
@given(
    problem=coco_problems(),
    max_dets=st.sampled_from([[1, 10, 100], [1, 2, 3]]),
    use_cats=st.sampled_from([1, 0]),
    area_ranges=st.sampled_from([None, AREA_RANGES]),
)
def test_random_tiny_problems_equal_pycocotools(problem, max_dets, use_cats, area_ranges):
    assert_same_as_pycocotools(*problem, max_dets=max_dets, use_cats=use_cats, area_ranges=area_ranges)


def box_polygon(box):
    """The COCO polygon of the box (x, y, w, h)."""
    x, y, w, h = box
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


# 17 keypoints at the same fractions (x, y) of every box, so that a detection near a ground truth
# has its keypoints near the ground truth's.
_KEYPOINT_FRACTIONS = np.random.default_rng(0).uniform(0.1, 0.9, (17, 2))


def box_keypoints(box, visibility=2):
    """COCO keypoints (x, y, visibility) * 17 of the box (x, y, w, h)."""
    xy = np.asarray(box[:2]) + _KEYPOINT_FRACTIONS * np.asarray(box[2:])
    return np.concatenate([xy, np.full((17, 1), visibility)], axis=1).ravel().tolist()


def test_segmentation_equals_pycocotools():
    coco_gt, coco_dt = synthetic_coco(num_images=6, num_categories=3, dets_per_image=20)
    for ann in coco_gt.dataset["annotations"]:
        ann["segmentation"] = box_polygon(ann["bbox"])
    assert_same_as_pycocotools(coco_gt, coco_dt, iou_type="segm")


def test_keypoints_equal_pycocotools():
    coco_gt, coco_dt = synthetic_coco(num_images=10, num_categories=2, dets_per_image=20)
    for ann in coco_gt.dataset["annotations"]:
        ann["keypoints"], ann["num_keypoints"] = box_keypoints(ann["bbox"]), 17
    detections = [
        {key: d[key] for key in ("image_id", "category_id", "score")} | {"keypoints": box_keypoints(d["bbox"])}
        for d in coco_dt.dataset["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(detections)
    reference = assert_same_as_pycocotools(coco_gt, coco_dt, iou_type="keypoints")
    assert reference.stats[0] > 0.02  # OKS is strict: the noisy copies of ground truths match few


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """
    A registered 6-image COCO-format dataset (image files are not needed) of 4 categories, the
    last without objects, with boxes, polygons and keypoints; and detections on it (pycocotools' COCO).
    """
    coco_gt, coco_dt = synthetic_coco(num_images=6, num_categories=3, dets_per_image=40)
    dataset = coco_gt.dataset
    dataset["categories"].append({"id": 4, "name": "class4"})
    for ann in dataset["annotations"]:
        ann["segmentation"] = box_polygon(ann["bbox"])
        ann["keypoints"], ann["num_keypoints"] = box_keypoints(ann["bbox"]), 17
    name = "coco_evaluation_tiny"
    if name not in DatasetCatalog.list():
        json_file = tmp_path_factory.mktemp("coco") / "annotations.json"
        json_file.write_text(json.dumps(dataset))
        register_coco_instances(name, {}, str(json_file), str(json_file.parent))
        DatasetCatalog.get(name)  # sets thing_classes and the category id map
    return name, coco_dt


def box_masks(xywh: torch.Tensor, image_size) -> torch.Tensor:
    """(N, H, W) bool: the pixels of the N boxes ``xywh`` (N, 4: x, y, w, h) on an image of ``image_size`` (H, W)."""
    x0, y0, x1, y1 = (torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1).round()[:, :, None, None]).unbind(1)
    rows, cols = torch.arange(image_size[0])[:, None], torch.arange(image_size[1])
    return (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)


@pytest.fixture(scope="module")
def tiny_outputs(tiny_dataset):
    """
    image id -> the detections of ``tiny_dataset`` on it as a model's ``Instances`` (class =
    category id - 1), with masks and keypoints of their boxes.
    """
    _, coco_dt = tiny_dataset
    image_size = (480, 640)
    outputs = {}
    for image_id, anns in coco_dt.imgToAnns.items():
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32)
        keypoints = torch.tensor([box_keypoints(a["bbox"]) for a in anns], dtype=torch.float32).view(-1, 17, 3)
        outputs[image_id] = Instances(
            image_size,
            pred_boxes=Boxes(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)),
            scores=torch.tensor([a["score"] for a in anns]),
            pred_classes=torch.tensor([a["category_id"] - 1 for a in anns]),
            pred_masks=box_masks(xywh, image_size),
            # detectron2 takes 0.5 from predicted keypoints' x and y, as it adds it to annotations'.
            pred_keypoints=keypoints + torch.tensor([0.5, 0.5, 0.0]),
        )
    return outputs


def evaluate(evaluator, outputs, img_ids=None):
    """Feed ``evaluator`` the ``outputs`` (image id -> ``Instances``) and return its results on ``img_ids``."""
    evaluator.reset()
    for image_id, instances in outputs.items():
        # process() moves the keypoints it is given in place: a copy of them for each evaluator.
        instances = Instances(instances.image_size, **instances.get_fields())
        instances.pred_keypoints = instances.pred_keypoints.clone()
        evaluator.process([{"image_id": image_id}], [{"instances": instances}])
    with contextlib.redirect_stdout(io.StringIO()):
        return evaluator.evaluate(img_ids)


# detectron2 0.6 encodes masks with np.array(tensor, copy=False), which numpy 2 warns of.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.parametrize("max_dets_per_image, img_ids", [(None, None), (10, [1, 3, 4, 6])])
def test_detectron2_evaluator_equals_official_api(
    tiny_dataset, tiny_outputs, tmp_path, caplog, max_dets_per_image, img_ids
):
    name, _ = tiny_dataset
    caplog.set_level(logging.INFO, logger="yolos_d2.evaluation.coco_evaluation")
    official_dir, fast_dir = tmp_path / "official", tmp_path / "fast"
    official = evaluate(
        COCOEvaluator(name, output_dir=str(official_dir), max_dets_per_image=max_dets_per_image, use_fast_impl=False),
        tiny_outputs,
        img_ids,
    )
    fast = evaluate(
        FastCOCOEvaluator(name, output_dir=str(fast_dir), max_dets_per_image=max_dets_per_image), tiny_outputs, img_ids
    )

    assert set(fast) == set(official) == {"bbox", "segm", "keypoints"}
    for task in fast:
        assert list(fast[task]) == list(official[task])
        np.testing.assert_allclose(list(fast[task].values()), list(official[task].values()), rtol=MEAN_RTOL, atol=0)
    assert {"AP-class4", "APs"} <= set(fast["bbox"]) and np.isnan(fast["bbox"]["AP-class4"])  # no object of class4
    assert all(fast[task]["AP"] > 1 for task in fast)  # a problem with matches
    # The summary pycocotools prints, logged.
    assert f"(AP) @[ IoU=0.50:0.95 | area=   all | maxDets={max_dets_per_image or 100:>3d}" in caplog.text
    results = "coco_instances_results.json"
    assert json.loads((fast_dir / results).read_text()) == json.loads((official_dir / results).read_text())


def one_detection(evaluator, category_index, **fields):
    """``evaluator`` after ``process()`` of one detection of class ``category_index`` (and ``fields``) on image 1."""
    instances = Instances((480, 640), pred_boxes=Boxes(torch.tensor([[10.0, 20.0, 110.0, 220.0]])), **fields)
    instances.scores, instances.pred_classes = torch.tensor([0.5]), torch.tensor([category_index])
    evaluator.reset()
    evaluator.process([{"image_id": 1}], [{"instances": instances}])
    return evaluator


def test_prediction_of_a_class_the_dataset_lacks_is_named(tiny_dataset):
    name, _ = tiny_dataset
    evaluator = one_detection(FastCOCOEvaluator(name), 4)
    with pytest.raises(ValueError, match=f"A prediction has class 4, but dataset '{name}' has 4 classes: 0 to 3"):
        evaluator.evaluate()


def test_keypoint_count_other_than_the_sigmas_is_named(tiny_dataset):
    name, _ = tiny_dataset
    keypoints = torch.tensor(box_keypoints([10, 20, 100, 200]), dtype=torch.float32).view(1, 17, 3)
    evaluator = one_detection(FastCOCOEvaluator(name, kpt_oks_sigmas=[0.1] * 5), 0, pred_keypoints=keypoints)
    with pytest.raises(ValueError, match="the ground truths have 17, the OKS sigmas \\(kpt_oks_sigmas\\) have 5"):
        evaluator.evaluate()
