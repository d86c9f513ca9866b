"""
What a detector gets right and wrong on a COCO-format dataset, from its detections in COCO's
results format (detectron2's ``coco_instances_results.json``):

- COCO's precision array (:func:`coco_precision`), from which each class's AP, AP50 and AP75
  (:func:`class_average_precisions`) and the precision-recall curves
  (:func:`precision_recall_curves`);
- the errors in the manner of TIDE (Bolya et al., "TIDE: A General Toolbox for Identifying Object
  Detection Errors", ECCV 2020): each false positive at IoU 0.5 typed, each ground truth that no
  detection finds counted, and the AP50 each kind of error costs (:func:`analyse_errors`,
  :func:`summarise_errors`);
- the confusion matrix of the classes and the background (:func:`confusion_matrix`);
- the number of errors in each image (:func:`image_error_counts`).

Detections are evaluated as COCO evaluates boxes: the area range "all", at most
:data:`MAX_DETECTIONS` per image and class (the highest scoring), crowd annotations ignored (a
detection matching one counts neither way). Boxes are XYWH in pixels throughout.
"""
import enum
import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import Params

__all__ = [
    "BACKGROUND_IOU",
    "ERROR_TYPES",
    "FALSE_POSITIVE_TYPES",
    "FOREGROUND_IOU",
    "IOU_THRESHOLDS",
    "MAX_DETECTIONS",
    "RECALL_THRESHOLDS",
    "Detections",
    "ErrorAnalysis",
    "ErrorSummary",
    "GroundTruth",
    "Outcome",
    "analyse_errors",
    "average_precisions",
    "class_average_precisions",
    "coco_precision",
    "confusion_matrix",
    "image_error_counts",
    "images_with_most_errors",
    "objects_found",
    "precision_recall_curves",
    "read_detections",
    "read_ground_truth",
    "summarise_errors",
]

_COCO_PARAMS = Params(iouType="bbox")
# COCO's IoU thresholds (T,): 0.5, 0.55, ..., 0.95, and recall thresholds (R,): 0, 0.01, ..., 1.
IOU_THRESHOLDS = _COCO_PARAMS.iouThrs
RECALL_THRESHOLDS = _COCO_PARAMS.recThrs
# The detections COCO evaluates per image and class: the highest scoring 100.
MAX_DETECTIONS = _COCO_PARAMS.maxDets[-1]

# TIDE's foreground IoU t_f (a detection this close to an object of its class finds it: COCO's
# AP50) and background IoU t_b (a detection less close than this to every object is background).
FOREGROUND_IOU = 0.5
BACKGROUND_IOU = 0.1


class Outcome(enum.IntEnum):
    """What a detection is at IoU :data:`FOREGROUND_IOU`: right, ignored, or its kind of false positive."""

    TRUE_POSITIVE = 0
    IGNORED = 1  # it matches a crowd annotation
    CLASSIFICATION = 2  # IoU >= t_f with an object of another class
    LOCALISATION = 3  # t_b <= IoU < t_f with an object of its class
    BOTH = 4  # t_b <= IoU < t_f with an object of another class
    DUPLICATE = 5  # IoU >= t_f with an object of its class that a higher scoring detection found
    BACKGROUND = 6  # IoU < t_b with every object


# TIDE's errors: the five kinds of false positives, then the objects missed.
FALSE_POSITIVE_TYPES = ("classification", "localisation", "both", "duplicate", "background")
ERROR_TYPES = (*FALSE_POSITIVE_TYPES, "missed")
_OUTCOME_OF_TYPE = {name: Outcome[name.upper()] for name in FALSE_POSITIVE_TYPES}
_FALSE_POSITIVES = tuple(_OUTCOME_OF_TYPE.values())


@dataclass(frozen=True)
class GroundTruth:
    """
    The G annotations of a COCO-format dataset of I images and K classes. Images and classes are
    indexed in the order of their ids, as COCO's evaluation orders them.
    """

    image_ids: List  # (I,) the images' ids in the json, sorted
    category_ids: List  # (K,) the categories' ids in the json, sorted
    class_names: List[str]  # (K,)
    image: np.ndarray  # (G,) int: index of the annotation's image
    category: np.ndarray  # (G,) int: index of its class
    boxes: np.ndarray  # (G, 4) float64 XYWH
    area: np.ndarray  # (G,) float64: its "area", else the box's
    crowd: np.ndarray  # (G,) bool: iscrowd

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def objects_per_class(self) -> np.ndarray:
        """(K,) int: the annotations of each class that are not crowds."""
        return np.bincount(self.category[~self.crowd], minlength=self.num_classes)

    def indexed_coco(self) -> Dict:
        """The dataset as a COCO json whose image, category and annotation ids are 1 + their index."""
        annotations = zip(self.image.tolist(), self.category.tolist(), self.boxes.tolist(), self.area.tolist())
        return {
            "images": [{"id": i + 1} for i in range(len(self.image_ids))],
            "categories": [{"id": k + 1, "name": name} for k, name in enumerate(self.class_names)],
            "annotations": [
                {"id": g + 1, "image_id": i + 1, "category_id": k + 1, "bbox": box, "area": area, "iscrowd": int(crowd)}
                for g, ((i, k, box, area), crowd) in enumerate(zip(annotations, self.crowd))
            ],
        }


@dataclass(frozen=True)
class Detections:
    """N detections, at most :data:`MAX_DETECTIONS` per image and class."""

    image: np.ndarray  # (N,) int: index of the image in GroundTruth.image_ids
    category: np.ndarray  # (N,) int: index of the class
    boxes: np.ndarray  # (N, 4) float64 XYWH
    scores: np.ndarray  # (N,) float64
    rank: np.ndarray  # (N,) int: 0 for the highest scoring of its image and class, 1 for the next, ...

    def evaluation_order(self) -> np.ndarray:
        """(N,) the detections by decreasing score, equal scores by image then rank, as COCO accumulates them."""
        return np.lexsort((self.rank, self.image, -self.scores))

    def indexed_results(self) -> List[Dict]:
        """The detections in COCO's results format, with the ids of :meth:`GroundTruth.indexed_coco`."""
        columns = (self.image.tolist(), self.category.tolist(), self.boxes.tolist(), self.scores.tolist())
        return [
            {"image_id": i + 1, "category_id": k + 1, "bbox": box, "score": score} for i, k, box, score in zip(*columns)
        ]


def read_ground_truth(coco: Mapping) -> GroundTruth:
    """
    The annotations of ``coco``, the content of a COCO-format json checked by
    :func:`yolos_d2.data.validation.check_coco_json` (ids of one kind within each list, unique).
    """
    image_ids = sorted(image["id"] for image in coco["images"])
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    image_index = {image_id: i for i, image_id in enumerate(image_ids)}
    category_index = {c["id"]: k for k, c in enumerate(categories)}
    annotations = coco.get("annotations", [])
    boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
    return GroundTruth(
        image_ids=image_ids,
        category_ids=[c["id"] for c in categories],
        class_names=[c["name"] for c in categories],
        image=np.array([image_index[a["image_id"]] for a in annotations], dtype=np.int64),
        category=np.array([category_index[a["category_id"]] for a in annotations], dtype=np.int64),
        boxes=boxes,
        area=np.array([a.get("area", w * h) for a, (_, _, w, h) in zip(annotations, boxes)], dtype=np.float64),
        crowd=np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool),
    )


def read_detections(results: object, ground_truth: GroundTruth, source: str) -> Detections:
    """
    The detections of ``results``, COCO's results format read from the file ``source``: a list of
    objects with an "image_id" and a "category_id" of the dataset, a "bbox" of four finite
    numbers [x, y, width, height] whose sides are >= 0, and a finite "score". ValueError naming
    ``source``, the first detection that is not so and why. Of each image and class, the
    :data:`MAX_DETECTIONS` highest scoring are kept (equal scores in the order of the list).
    """
    if not isinstance(results, list) or not results:
        raise ValueError(f"{source}: expected a non-empty list of detections in COCO's results format")
    image_index = {image_id: i for i, image_id in enumerate(ground_truth.image_ids)}
    category_index = {category_id: k for k, category_id in enumerate(ground_truth.category_ids)}
    for n, detection in enumerate(results):
        problem = _detection_problem(detection, image_index, category_index)
        if problem:
            raise ValueError(f"{source}: detection {n} {problem}")
    image = np.array([image_index[d["image_id"]] for d in results], dtype=np.int64)
    category = np.array([category_index[d["category_id"]] for d in results], dtype=np.int64)
    scores = np.array([d["score"] for d in results], dtype=np.float64)
    order = np.lexsort((-scores, category, image))  # by image, class, decreasing score; stable
    group = (image * ground_truth.num_classes + category)[order]  # ascending
    rank = np.empty(len(results), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.searchsorted(group, group, side="left")
    kept = rank < MAX_DETECTIONS
    boxes = np.array([d["bbox"] for d in results], dtype=np.float64)
    return Detections(image[kept], category[kept], boxes[kept], scores[kept], rank[kept])


def _detection_problem(detection: object, image_index: Mapping, category_index: Mapping) -> str:
    """What is wrong with one detection of a results list ("" if nothing), to end "detection N ..."."""
    if not isinstance(detection, dict):
        return f"is {type(detection).__name__}, not an object with image_id, category_id, bbox and score"
    missing = [key for key in ("image_id", "category_id", "bbox", "score") if key not in detection]
    if missing:
        return f"has no {', '.join(missing)}"
    if not _is_id(detection["image_id"]) or detection["image_id"] not in image_index:
        return f"has image_id {detection['image_id']!r}, which is not an image of the dataset"
    if not _is_id(detection["category_id"]) or detection["category_id"] not in category_index:
        return f"has category_id {detection['category_id']!r}, which is not a category of the dataset"
    box = detection["bbox"]
    if not (isinstance(box, list) and len(box) == 4 and all(map(_is_finite_number, box)) and min(box[2:]) >= 0):
        return f"has bbox {box!r}: expected four finite numbers [x, y, width, height], width and height >= 0"
    if not _is_finite_number(detection["score"]):
        return f"has score {detection['score']!r}: expected a finite number"
    return ""


def _is_id(value: object) -> bool:
    return isinstance(value, (int, str))


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------
# COCO's evaluation


def coco_precision(ground_truth: GroundTruth, detections: Detections) -> np.ndarray:
    """
    COCO's interpolated precision, pycocotools' ``COCOeval.eval["precision"]`` computed by
    faster-coco-eval (which leaves out the ``np.spacing(1)`` pycocotools adds to the precision's
    denominator: the same to float64 rounding): (T, R, K, A, M) for the T
    :data:`IOU_THRESHOLDS`, R :data:`RECALL_THRESHOLDS`, K classes, A area ranges (all, small,
    medium, large) and M maximum detections per image (1, 10, 100); -1 for a class without
    ground truth.
    """
    coco_gt = COCO(ground_truth.indexed_coco())
    coco_dt = coco_gt.loadRes(detections.indexed_results())
    evaluation = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *args, **kwargs: None)
    evaluation.evaluate()
    evaluation.accumulate()
    return evaluation.eval["precision"]


def _iou_index(iou: float) -> int:
    """The index of ``iou`` in :data:`IOU_THRESHOLDS`; ValueError if it is not one of them."""
    matches = np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou))
    if not len(matches):
        raise ValueError(f"IoU {iou} is not one of COCO's thresholds {IOU_THRESHOLDS.round(2).tolist()}")
    return int(matches[0])


# COCO's APs: the IoU thresholds (indices of IOU_THRESHOLDS) each averages over.
_AP_IOUS = {"AP": slice(None), "AP50": _iou_index(0.5), "AP75": _iou_index(0.75)}


def _mean_of_valid(precision: np.ndarray) -> float:
    """The mean of the entries of ``precision`` but -1 (classes without objects), as COCO's summary; nan if none."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else math.nan


def class_average_precisions(precision: np.ndarray) -> Dict[str, np.ndarray]:
    """
    Args:
        precision: (T, R, K, A, M) from :func:`coco_precision`.

    Returns:
        "AP" (over IoU 0.5:0.95), "AP50" and "AP75": (K,) each class's, 0 to 1, nan for a class
        without ground truth; for the area range "all" and 100 detections per image, as
        detectron2's ``COCOEvaluator`` computes them.
    """
    of_all = precision[:, :, :, 0, -1]  # (T, R, K)
    return {
        name: np.array([_mean_of_valid(of_all[index, ..., k]) for k in range(of_all.shape[2])])
        for name, index in _AP_IOUS.items()
    }


def average_precisions(precision: np.ndarray) -> Dict[str, float]:
    """COCO's AP, AP50 and AP75 (0 to 1) of ``precision``, (T, R, K, A, M) from :func:`coco_precision`."""
    of_all = precision[:, :, :, 0, -1]  # (T, R, K)
    return {name: _mean_of_valid(of_all[index]) for name, index in _AP_IOUS.items()}


def precision_recall_curves(precision: np.ndarray, iou: float) -> Tuple[np.ndarray, np.ndarray]:
    """
    The precision-recall curves at ``iou`` (one of :data:`IOU_THRESHOLDS`), area range "all",
    100 detections per image.

    Args:
        precision: (T, R, K, A, M) from :func:`coco_precision`.

    Returns:
        (K, R) each class's interpolated precision at the :data:`RECALL_THRESHOLDS`, nan for a
        class without ground truth; (R,) their mean over the classes with ground truth, whose
        mean is the AP at ``iou``.
    """
    per_class = precision[_iou_index(iou), :, :, 0, -1].T.astype(np.float64)  # (K, R)
    per_class[per_class == -1] = np.nan
    with_objects = ~np.isnan(per_class).all(axis=1)
    overall = per_class[with_objects].mean(axis=0) if with_objects.any() else np.full(per_class.shape[1], np.nan)
    return per_class, overall


# ---------------------------------------------------------------------------------------------
# The errors


@dataclass(frozen=True)
class ErrorAnalysis:
    """What each of N detections and G annotations is at IoU :data:`FOREGROUND_IOU`."""

    outcome: np.ndarray  # (N,) int: an Outcome
    target: np.ndarray  # (N,) int: the annotation a classification or localisation error aimed at, else -1
    matched_by: np.ndarray  # (G,) int: the detection that found the annotation, -1 for none (and for crowds)
    missed: np.ndarray  # (G,) bool: an object that no detection found or aimed at (TIDE's missed error)


def _ious(detection_boxes: np.ndarray, gt_boxes: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(n, g) COCO's IoUs of the boxes; for a crowd annotation, the share of the detection inside it."""
    if not len(detection_boxes) or not len(gt_boxes):
        return np.zeros((len(detection_boxes), len(gt_boxes)))
    return np.asarray(mask_utils.iou(detection_boxes, gt_boxes, crowd.astype(np.uint8)))


def _by_image(image: np.ndarray, num_images: int) -> List[np.ndarray]:
    """For each of ``num_images`` images, the indices i (ascending) with ``image[i]`` equal to it."""
    order = np.argsort(image, kind="stable")
    bounds = np.searchsorted(image[order], np.arange(num_images + 1))
    return [order[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


def _images(
    ground_truth: GroundTruth, detections: Detections, selected: np.ndarray
) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """
    For each image: the indices of its ``selected`` ((N,) bool) detections and of its
    annotations, and their (n, g) IoUs (:func:`_ious`).
    """
    num_images = len(ground_truth.image_ids)
    for dets, gts in zip(_by_image(detections.image, num_images), _by_image(ground_truth.image, num_images)):
        dets = dets[selected[dets]]
        yield dets, gts, _ious(detections.boxes[dets], ground_truth.boxes[gts], ground_truth.crowd[gts])


def _coco_match(ious: np.ndarray, candidates: np.ndarray, crowd: np.ndarray) -> int:
    """
    The annotation (index into ``ious``, (g,)) a detection matches among ``candidates``, as
    COCO matches: the closest object at IoU >= t_f, else the closest crowd; the last of equals.
    -1 for none.
    """
    for group in (candidates & ~crowd, candidates & crowd):
        close = group & (ious >= FOREGROUND_IOU)
        if close.any():
            return int(np.flatnonzero(close & (ious == ious[close].max()))[-1])
    return -1


def analyse_errors(ground_truth: GroundTruth, detections: Detections) -> ErrorAnalysis:
    """
    Match the detections at IoU t_f = :data:`FOREGROUND_IOU` as COCO does (in each image and
    class, by decreasing score, each to the closest object not found yet) and type each false
    positive by its IoU with the image's objects (crowds aside), as TIDE defines the errors, the
    first that holds:

    1. duplicate: IoU >= t_f with an object of its class (found by a higher scoring detection);
    2. classification: IoU >= t_f with an object of another class;
    3. localisation: t_b <= IoU < t_f with an object of its class;
    4. both: t_b <= IoU < t_f with an object of another class;
    5. background: IoU < t_b (:data:`BACKGROUND_IOU`) with every object.

    A classification or localisation error aims at the closest such object. An object that no
    detection finds is missed, unless a classification or localisation error aims at it.
    """
    outcome = np.full(len(detections.scores), Outcome.TRUE_POSITIVE, dtype=np.int64)
    target = np.full(len(detections.scores), -1, dtype=np.int64)
    matched_by = np.full(len(ground_truth.category), -1, dtype=np.int64)
    for dets, gts, ious in _images(ground_truth, detections, np.ones(len(detections.scores), dtype=bool)):
        crowd = ground_truth.crowd[gts]
        same_class = detections.category[dets, None] == ground_truth.category[None, gts]
        found = np.zeros(len(gts), dtype=bool)
        false_positive = np.zeros(len(dets), dtype=bool)
        for row in np.argsort(detections.rank[dets], kind="stable"):  # within a class, by decreasing score
            match = _coco_match(ious[row], same_class[row] & (~found | crowd), crowd)
            if match < 0:
                false_positive[row] = True
            elif crowd[match]:
                outcome[dets[row]] = Outcome.IGNORED
            else:
                found[match] = True
                matched_by[gts[match]] = dets[row]
        rows = np.flatnonzero(false_positive)
        outcome[dets[rows]], aimed = _false_positive_types(ious[rows][:, ~crowd], same_class[rows][:, ~crowd])
        aiming = aimed >= 0
        target[dets[rows[aiming]]] = gts[~crowd][aimed[aiming]]
    aimed_at = target[np.isin(outcome, (Outcome.CLASSIFICATION, Outcome.LOCALISATION))]
    missed = (matched_by < 0) & ~ground_truth.crowd
    missed[aimed_at] = False
    return ErrorAnalysis(outcome, target, matched_by, missed)


def _false_positive_types(ious: np.ndarray, same_class: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """
    Args:
        ious, same_class: (f, g) false positives x the image's objects: their IoUs, whether of one class.

    Returns:
        (f,) the Outcome of each, (f,) the object (column) a classification or localisation error aims at, else -1.
    """
    if not ious.shape[1]:
        return np.full(len(ious), Outcome.BACKGROUND), np.full(len(ious), -1)
    of_class, of_other = np.where(same_class, ious, -1.0), np.where(same_class, -1.0, ious)
    best_of_class, best_of_other = of_class.max(axis=1), of_other.max(axis=1)
    conditions = [
        best_of_class >= FOREGROUND_IOU,
        best_of_other >= FOREGROUND_IOU,
        best_of_class >= BACKGROUND_IOU,
        best_of_other >= BACKGROUND_IOU,
    ]
    outcome = np.select(
        conditions, [Outcome.DUPLICATE, Outcome.CLASSIFICATION, Outcome.LOCALISATION, Outcome.BOTH], Outcome.BACKGROUND
    )
    aimed = np.select(
        [outcome == Outcome.CLASSIFICATION, outcome == Outcome.LOCALISATION],
        [of_other.argmax(axis=1), of_class.argmax(axis=1)],
        -1,
    )
    return outcome, aimed


# ---------------------------------------------------------------------------------------------
# AP50 with errors fixed


@dataclass(frozen=True)
class _Counting:
    """How AP50 counts N detections and the objects of K classes."""

    category: np.ndarray  # (N,) int: the class a detection counts in
    true_positive: np.ndarray  # (N,) bool
    counted: np.ndarray  # (N,) bool: False for an ignored detection, or one a fix removed
    num_objects: np.ndarray  # (K,) int


def _counting(ground_truth: GroundTruth, detections: Detections, analysis: ErrorAnalysis) -> _Counting:
    return _Counting(
        category=detections.category,
        true_positive=analysis.outcome == Outcome.TRUE_POSITIVE,
        counted=analysis.outcome != Outcome.IGNORED,
        num_objects=ground_truth.objects_per_class(),
    )


def _fixed(
    counting: _Counting,
    ground_truth: GroundTruth,
    detections: Detections,
    analysis: ErrorAnalysis,
    errors: Sequence[str],
) -> _Counting:
    """
    ``counting`` with the ``errors`` (of :data:`ERROR_TYPES`) fixed as TIDE fixes them: a
    classification error takes the class of the object it aims at, a localisation error its box:
    each then finds that object, unless a detection found it already or a higher scoring fixed
    one did, and is removed then (a duplicate); duplicate, both and background errors are
    removed; missed objects are no longer counted.
    """
    category, true_positive, counted = counting.category.copy(), counting.true_positive.copy(), counting.counted.copy()
    removed = [_OUTCOME_OF_TYPE[e] for e in errors if e in ("both", "duplicate", "background")]
    counted[np.isin(analysis.outcome, removed)] = False
    retargeted = [_OUTCOME_OF_TYPE[e] for e in errors if e in ("classification", "localisation")]
    found = analysis.matched_by >= 0
    order = detections.evaluation_order()
    for d in order[np.isin(analysis.outcome[order], retargeted)]:  # the higher scoring first
        aimed_at = analysis.target[d]
        if found[aimed_at]:
            counted[d] = False
        else:
            found[aimed_at] = True
            category[d], true_positive[d] = ground_truth.category[aimed_at], True
    num_objects = counting.num_objects
    if "missed" in errors:
        num_objects = num_objects - np.bincount(ground_truth.category[analysis.missed], minlength=len(num_objects))
    return _Counting(category, true_positive, counted, num_objects)


def _average_precision_50(counting: _Counting, detections: Detections) -> float:
    """
    COCO's AP50 (0 to 1) of the detections counted as ``counting`` says: for each class with
    objects, the mean of the interpolated precision at the :data:`RECALL_THRESHOLDS` of its
    detections by decreasing score (:meth:`Detections.evaluation_order`), computed as pycocotools
    computes it; the mean over those classes. nan if no class has objects.
    """
    order = detections.evaluation_order()
    order = order[counting.counted[order]]
    per_class = []
    for k, num_objects in enumerate(counting.num_objects):
        if num_objects == 0:
            continue
        true_positive = counting.true_positive[order[counting.category[order] == k]]
        tp_sum = np.cumsum(true_positive).astype(np.float64)
        fp_sum = np.cumsum(~true_positive).astype(np.float64)
        recall = tp_sum / num_objects
        precision = tp_sum / (fp_sum + tp_sum + np.spacing(1))
        # Interpolated: the best precision at this recall or a higher one.
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        at_threshold = np.zeros(len(RECALL_THRESHOLDS))
        indices = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
        reached = indices < len(precision)
        at_threshold[reached] = precision[indices[reached]]
        per_class.append(at_threshold)
    return float(np.mean(per_class)) if per_class else math.nan


@dataclass(frozen=True)
class ErrorSummary:
    """The errors of a detector and what they cost."""

    ap50: float  # COCO's AP50, 0 to 1
    counts: Dict[str, int]  # per error type of ERROR_TYPES
    delta_ap50: Dict[str, float]  # per error type, and "all": the AP50 gained by fixing those errors, 0 to 1


def summarise_errors(ground_truth: GroundTruth, detections: Detections, analysis: ErrorAnalysis) -> ErrorSummary:
    """The count of each error type of ``analysis`` and the AP50 gained by fixing each (TIDE's dAP), and all."""
    counting = _counting(ground_truth, detections, analysis)
    ap50 = _average_precision_50(counting, detections)
    counts = {name: int((analysis.outcome == outcome).sum()) for name, outcome in _OUTCOME_OF_TYPE.items()}
    counts["missed"] = int(analysis.missed.sum())
    delta = {
        name: _average_precision_50(_fixed(counting, ground_truth, detections, analysis, errors), detections) - ap50
        for name, errors in [*((e, (e,)) for e in ERROR_TYPES), ("all", ERROR_TYPES)]
    }
    return ErrorSummary(ap50, counts, delta)


# ---------------------------------------------------------------------------------------------
# The confusion matrix and the images with the most errors


def confusion_matrix(
    ground_truth: GroundTruth, detections: Detections, score_threshold: float, iou: float = FOREGROUND_IOU
) -> np.ndarray:
    """
    (K + 1, K + 1) int: row the true class, column the predicted class, the last row and column
    the background. In each image, the detections scoring at least ``score_threshold`` and the
    objects (crowds aside) are paired one to one, whatever their classes, the closest pairs at
    IoU >= ``iou`` first. An object left without a detection counts in the background column, a
    detection left without an object in the background row, unless it lies in a crowd (IoU >=
    ``iou`` as COCO computes it for crowds), where it is not counted.
    """
    background = ground_truth.num_classes
    matrix = np.zeros((background + 1, background + 1), dtype=np.int64)
    for dets, gts, ious in _images(ground_truth, detections, detections.scores >= score_threshold):
        crowd = ground_truth.crowd[gts]
        objects = gts[~crowd]
        paired_dets, paired_objects = np.zeros(len(dets), dtype=bool), np.zeros(len(objects), dtype=bool)
        for d, g in _closest_pairs(ious[:, ~crowd], iou):
            paired_dets[d], paired_objects[g] = True, True
            matrix[ground_truth.category[objects[g]], detections.category[dets[d]]] += 1
        np.add.at(matrix[:, background], ground_truth.category[objects[~paired_objects]], 1)
        in_crowd = (ious[:, crowd] >= iou).any(axis=1)
        np.add.at(matrix[background], detections.category[dets[~paired_dets & ~in_crowd]], 1)
    return matrix


def _closest_pairs(ious: np.ndarray, iou: float) -> List[Tuple[int, int]]:
    """(row, column) pairs of ``ious`` at >= ``iou``, one to one, taken greedily from the highest."""
    rows, columns = np.nonzero(ious >= iou)
    taken_rows, taken_columns, pairs = set(), set(), []
    for i in np.argsort(-ious[rows, columns], kind="stable"):
        r, c = int(rows[i]), int(columns[i])
        if r not in taken_rows and c not in taken_columns:
            taken_rows.add(r)
            taken_columns.add(c)
            pairs.append((r, c))
    return pairs


def image_error_counts(
    ground_truth: GroundTruth, detections: Detections, analysis: ErrorAnalysis, score_threshold: float
) -> np.ndarray:
    """
    (I,) int: the errors one sees in each image when its detections scoring at least
    ``score_threshold`` are drawn: those that are false positives, and the objects (crowds
    aside) that none of them found.
    """
    num_images = len(ground_truth.image_ids)
    wrong = (detections.scores >= score_threshold) & np.isin(analysis.outcome, _FALSE_POSITIVES)
    unfound = ~objects_found(detections, analysis, score_threshold) & ~ground_truth.crowd
    return np.bincount(detections.image[wrong], minlength=num_images) + np.bincount(
        ground_truth.image[unfound], minlength=num_images
    )


def objects_found(detections: Detections, analysis: ErrorAnalysis, score_threshold: float) -> np.ndarray:
    """(G,) bool: the annotations found by a detection scoring at least ``score_threshold``."""
    found = analysis.matched_by >= 0
    found[found] = detections.scores[analysis.matched_by[found]] >= score_threshold
    return found


def images_with_most_errors(error_counts: np.ndarray, num_images: int) -> np.ndarray:
    """The indices of at most ``num_images`` images with errors, the most first (equal counts in image order)."""
    order = np.argsort(-error_counts, kind="stable")[:num_images]
    return order[error_counts[order] > 0]
