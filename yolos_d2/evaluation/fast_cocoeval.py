"""
:class:`FastCOCOeval`: pycocotools' ``COCOeval`` for boxes, with ``evaluate()`` and
``accumulate()`` vectorised with numpy. Its ``eval["precision"]``, ``eval["recall"]``,
``eval["scores"]`` and ``stats`` are those of pycocotools, bit for bit: the same IoUs (from
``pycocotools.mask.iou``), the same greedy matching with its tie rules, the same floating-point
operations in accumulation.
"""
import copy
import logging
import math
import time
from typing import NamedTuple, Optional

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval, Params

__all__ = ["FastCOCOeval"]

logger = logging.getLogger(__name__)


class _Annotations(NamedTuple):
    """One COCO object's annotations (ground truths or detections) as arrays, N of them."""

    group: np.ndarray  # (N,) int: image index * K + category index, or image index when useCats=0
    category: np.ndarray  # (N,) int: index of the category in params.catIds
    boxes: np.ndarray  # (N, 4) float64: x, y, w, h absolute
    area: np.ndarray  # (N,) float64: the annotation's "area"
    score: np.ndarray  # (N,) float64: detection score (1 for ground truths)
    crowd: np.ndarray  # (N,) bool: iscrowd
    nonzero_id: np.ndarray  # (N,) bool: the annotation's id is not 0


class _EvaluatedDetections(NamedTuple):
    """What ``accumulate()`` needs from ``evaluate()``: N detections, A area ranges, T IoU thresholds."""

    category: np.ndarray  # (N,) int: category index, 0 for all when useCats=0
    rank: np.ndarray  # (N,) int: rank by score within its (image, category) group
    score: np.ndarray  # (N,) float64
    matched: np.ndarray  # (A, T, N) bool: matched a ground truth (whose id is not 0)
    ignored: np.ndarray  # (A, T, N) bool: matched an ignored ground truth, or unmatched and outside the area range
    num_positive: np.ndarray  # (K, A) int: ground truths that are not ignored, per category and area range


class _Groups(NamedTuple):
    """J (image, category) groups with both ground truths and detections: where they start and how many."""

    gt_start: np.ndarray  # (J,) int
    gt_count: np.ndarray  # (J,) int
    dt_start: np.ndarray  # (J,) int
    dt_count: np.ndarray  # (J,) int


# Groups x ground-truth slots matched at once: the matching's arrays have A x T times as many elements.
_SLOTS_PER_CHUNK = 2**16


class FastCOCOeval(COCOeval):
    """
    A drop-in ``COCOeval`` whose ``evaluate()`` and ``accumulate()`` are vectorised for
    ``iouType="bbox"`` (with ``useCats`` 1 or 0); other IoU types run pycocotools' code.

    ``evaluate()`` groups detections and ground truths by (image, category) with one sort, computes
    each group's IoUs with ``pycocotools.mask.iou`` and matches detections to ground truths for
    all groups, area ranges and IoU thresholds at once, one detection rank at a time. It does not
    fill pycocotools' per-image ``evalImgs`` or ``ious``: ``accumulate()`` and ``summarize()``
    (inherited) need neither.
    """

    def __init__(self, cocoGt=None, cocoDt=None, iouType: str = "segm"):
        super().__init__(cocoGt, cocoDt, iouType)
        self._detections: Optional[_EvaluatedDetections] = None

    def evaluate(self) -> None:
        """Match detections to ground truths (for boxes, without filling ``evalImgs``)."""
        p = self.params
        if p.iouType != "bbox" or p.useSegm is not None:
            self._detections = None
            return super().evaluate()
        start = time.perf_counter()
        p.imgIds = list(np.unique(p.imgIds))
        if p.useCats:
            p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        gts = _annotation_arrays(self.cocoGt, p)
        dts = _annotation_arrays(self.cocoDt, p)
        self._detections = _evaluate_detections(gts, dts, p)
        self._paramsEval = copy.deepcopy(p)
        self.eval = {}
        logger.info(f"FastCOCOeval.evaluate() finished in {time.perf_counter() - start:.2f} seconds.")

    def accumulate(self, p: Optional[Params] = None) -> None:
        """
        Fill ``self.eval`` as pycocotools does. ``p`` must be ``None`` (or ``self.params``) for
        boxes: accumulating over a subset of the evaluated parameters is not supported.
        """
        if self._detections is None:
            return super().accumulate(p)
        if p is not None and p is not self.params:
            raise ValueError("FastCOCOeval accumulates with the parameters it evaluated with (p=None)")
        start = time.perf_counter()
        p = self.params
        num_categories = len(p.catIds) if p.useCats else 1
        self.eval = {
            "params": p,
            "counts": [len(p.iouThrs), len(p.recThrs), num_categories, len(p.areaRng), len(p.maxDets)],
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            **_accumulate(self._detections, p),
        }
        logger.info(f"FastCOCOeval.accumulate() finished in {time.perf_counter() - start:.2f} seconds.")


def _annotation_arrays(coco, p: Params) -> _Annotations:
    """
    The annotations of ``coco`` that pycocotools evaluates under ``p`` (images ``p.imgIds``,
    categories ``p.catIds``), sorted as pycocotools concatenates them per group: by image, then by
    the category's position in ``p.catIds``, then in the order of ``coco``'s annotations.
    """
    # Python scalars: dictionary look-ups of numpy ints (as np.unique leaves in p) are slow.
    image_index = {image_id: i for i, image_id in enumerate(np.asarray(p.imgIds).tolist())}
    category_index = {category_id: k for k, category_id in enumerate(np.asarray(p.catIds).tolist())}
    # Filtering categories here is faster than getAnnIds(catIds=...), which searches a list.
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=p.imgIds)) if a["category_id"] in category_index]
    images = np.array([image_index[a["image_id"]] for a in anns], dtype=np.int64)
    categories = np.array([category_index[a["category_id"]] for a in anns], dtype=np.int64)
    order = np.lexsort((categories, images))
    images, categories = images[order], categories[order]
    anns = [anns[i] for i in order]
    num_categories = len(p.catIds)
    return _Annotations(
        group=images * num_categories + categories if p.useCats else images,
        category=categories,
        boxes=np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
        area=np.array([a["area"] for a in anns], dtype=np.float64),
        score=np.array([a.get("score", 1.0) for a in anns], dtype=np.float64),
        crowd=np.array([int(a.get("iscrowd", 0)) != 0 for a in anns], dtype=bool),
        nonzero_id=np.array([a["id"] != 0 for a in anns], dtype=bool),
    )


def _outside(area: np.ndarray, area_ranges) -> np.ndarray:
    """(A, N) bool: ``area`` (N,) outside each [low, high] of ``area_ranges`` (A, 2), bounds inside."""
    ranges = np.asarray(area_ranges, dtype=np.float64)
    return (area < ranges[:, :1]) | (area > ranges[:, 1:])


def _evaluate_detections(gts: _Annotations, dts: _Annotations, p: Params) -> _EvaluatedDetections:
    """Match the detections of every (image, category) group to its ground truths, as pycocotools' ``evaluateImg``."""
    # Within each group: highest score first, ties in concatenation order (pycocotools' mergesort).
    order = np.lexsort((-dts.score, dts.group))
    dts = _Annotations(*(field[order] for field in dts))
    group_start = np.searchsorted(dts.group, dts.group, side="left")
    rank = np.arange(len(dts.group)) - group_start
    keep = rank < p.maxDets[-1]
    dts, rank = _Annotations(*(field[keep] for field in dts)), rank[keep]

    gt_ignored = gts.crowd | _outside(gts.area, p.areaRng)  # (A, G)
    gt_category = gts.category if p.useCats else np.zeros_like(gts.category)
    num_categories = len(p.catIds) if p.useCats else 1
    num_positive = np.stack([np.bincount(gt_category[~ignored], minlength=num_categories) for ignored in gt_ignored], 1)

    matched, matched_ignored = _greedy_match(gts, gt_ignored, dts, np.asarray(p.iouThrs, dtype=np.float64))
    # pycocotools marks a match by the ground truth's id, so a match to id 0 counts as no match.
    ignored = matched_ignored | (~matched & _outside(dts.area, p.areaRng)[:, None, :])
    return _EvaluatedDetections(
        category=dts.category if p.useCats else np.zeros_like(dts.category),
        rank=rank,
        score=dts.score,
        matched=matched,
        ignored=ignored,
        num_positive=num_positive,
    )


def _greedy_match(gts: _Annotations, gt_ignored: np.ndarray, dts: _Annotations, iou_thresholds: np.ndarray):
    """
    pycocotools' greedy matching, for all groups, A area ranges and T IoU thresholds at once.

    Each detection, in rank order within its group, takes among the ground truths it overlaps by
    at least the threshold (capped at 1 - 1e-10) and that are crowds or not yet taken: the one of
    highest IoU that is not ignored, or if there is none, the ignored one of highest IoU; the last
    in annotation order on equal IoU (pycocotools sorts ignored ground truths last, stably, and
    keeps a later equal IoU).

    Args:
        gts: G ground truths, sorted by group; dts: N detections, sorted by group then rank.
        gt_ignored: (A, G) bool, crowd or outside the area range.
        iou_thresholds: (T,) float64.

    Returns:
        ``matched`` (A, T, N) bool, matched to a ground truth whose id is not 0, and
        ``matched_ignored`` (A, T, N) bool, matched to an ignored ground truth.
    """
    matched = np.zeros((len(gt_ignored), len(iou_thresholds), len(dts.group)), dtype=bool)
    matched_ignored = np.zeros_like(matched)
    gt_groups, gt_start, gt_count = np.unique(gts.group, return_index=True, return_counts=True)
    dt_groups, dt_start, dt_count = np.unique(dts.group, return_index=True, return_counts=True)
    _, gt_pick, dt_pick = np.intersect1d(gt_groups, dt_groups, assume_unique=True, return_indices=True)
    groups = _Groups(gt_start[gt_pick], gt_count[gt_pick], dt_start[dt_pick], dt_count[dt_pick])
    # Ground truths are padded to the largest count of a chunk: chunks of groups whose counts are
    # within a factor 2 bound that padding, and their size the arrays' memory.
    size_class = np.ceil(np.log2(groups.gt_count)).astype(np.int64)
    for c in np.unique(size_class):
        members = np.flatnonzero(size_class == c)
        for chunk in np.array_split(members, math.ceil(len(members) * 2**c / _SLOTS_PER_CHUNK)):
            chunk_groups = _Groups(*(field[chunk] for field in groups))
            _match_groups(gts, gt_ignored, dts, iou_thresholds, chunk_groups, matched, matched_ignored)
    return matched, matched_ignored


def _match_groups(
    gts: _Annotations,
    gt_ignored: np.ndarray,
    dts: _Annotations,
    iou_thresholds: np.ndarray,
    groups: _Groups,
    matched: np.ndarray,
    matched_ignored: np.ndarray,
) -> None:
    """:func:`_greedy_match` of J ``groups``, written into its outputs ``matched`` and ``matched_ignored``."""
    # Most detections first, so that the groups with a detection of rank r are a prefix.
    groups = _Groups(*(field[np.argsort(-groups.dt_count, kind="stable")] for field in groups))
    gt_start, gt_count, dt_start, dt_count = groups
    # Each group's (detections, ground truths) IoU block, flattened row-major one after another.
    ious = np.concatenate(
        [
            mask_utils.iou(dts.boxes[d : d + nd], gts.boxes[g : g + ng], gts.crowd[g : g + ng].astype(np.uint8)).ravel()
            for g, ng, d, nd in zip(*groups)
        ]
    )
    iou_offset = np.cumsum(dt_count * gt_count) - dt_count * gt_count

    # Ground truths in S slots per group; padding never matches (its IoU is -inf).
    slots = np.arange(gt_count.max())
    valid = slots < gt_count[:, None]  # (J, S)
    gt_index = np.where(valid, gt_start[:, None] + slots, 0)
    slot_ignored = gt_ignored[:, gt_index].transpose(1, 0, 2)[:, :, None, :]  # (J, A, 1, S)
    slot_crowd = gts.crowd[gt_index][:, None, None, :]  # (J, 1, 1, S)
    slot_nonzero_id = gts.nonzero_id[gt_index][:, None, None, :]
    taken = np.zeros((len(gt_count), len(gt_ignored), len(iou_thresholds), len(slots)), dtype=bool)
    thresholds = np.minimum(iou_thresholds, 1 - 1e-10)[:, None]  # (T, 1)

    for rank in range(dt_count[0]):
        n = np.count_nonzero(dt_count > rank)
        row = np.where(valid[:n], iou_offset[:n, None] + rank * gt_count[:n, None] + slots, 0)
        iou = np.where(valid[:n], ious[row], -np.inf)[:, None, None, :]  # (n, 1, 1, S)
        candidate = (iou >= thresholds) & (~taken[:n] | slot_crowd[:n])  # (n, A, T, S)
        regular = candidate & ~slot_ignored[:n]
        # Ignored ground truths are candidates only when no regular one is.
        candidate = np.where(regular.any(-1, keepdims=True), regular, candidate)
        best = len(slots) - 1 - np.argmax(np.where(candidate, iou, -np.inf)[..., ::-1], axis=-1)
        choice = (slots == best[..., None]) & candidate.any(-1, keepdims=True)  # (n, A, T, S): one-hot or none
        taken[:n] |= choice
        det_index = dt_start[:n] + rank
        matched[:, :, det_index] = (choice & slot_nonzero_id[:n]).any(-1).transpose(1, 2, 0)
        matched_ignored[:, :, det_index] = (choice & slot_ignored[:n]).any(-1).transpose(1, 2, 0)


def _accumulate(dets: _EvaluatedDetections, p: Params) -> dict:
    """
    pycocotools' ``precision`` (T, R, K, A, M), ``recall`` (T, K, A, M) and ``scores``
    (T, R, K, A, M), -1 where a category has no ground truth that is not ignored.
    """
    num_thresholds, num_recalls = len(p.iouThrs), len(p.recThrs)
    num_categories, num_areas, num_max_dets = dets.num_positive.shape + (len(p.maxDets),)
    precision = -np.ones((num_thresholds, num_recalls, num_categories, num_areas, num_max_dets))
    recall = -np.ones((num_thresholds, num_categories, num_areas, num_max_dets))
    scores = -np.ones_like(precision)

    # Per category: highest score first, ties by image then rank (pycocotools' mergesort of its
    # per-image concatenation).
    order = np.lexsort((-dets.score, dets.category))
    category, rank, score = dets.category[order], dets.rank[order], dets.score[order]
    true_pos = dets.matched[:, :, order] & ~dets.ignored[:, :, order]
    false_pos = ~dets.matched[:, :, order] & ~dets.ignored[:, :, order]
    bounds = np.searchsorted(category, np.arange(num_categories + 1))
    rec_thresholds = np.asarray(p.recThrs, dtype=np.float64)
    for k in range(num_categories):
        areas = np.flatnonzero(dets.num_positive[k] > 0)
        if len(areas) == 0:
            continue
        segment = slice(bounds[k], bounds[k + 1])
        category_tp, category_fp = true_pos[areas, :, segment], false_pos[areas, :, segment]
        for m, max_det in enumerate(p.maxDets):
            keep = rank[segment] < max_det
            pr, rc, sc = _precision_recall(
                category_tp[..., keep],
                category_fp[..., keep],
                score[segment][keep],
                dets.num_positive[k, areas],
                rec_thresholds,
            )
            precision[:, :, k, areas, m] = pr
            recall[:, k, areas, m] = rc
            scores[:, :, k, areas, m] = sc
    return {"precision": precision, "recall": recall, "scores": scores}


def _precision_recall(true_pos, false_pos, score, num_positive, rec_thresholds):
    """
    One category's precision at each recall threshold, final recall and score at each recall
    threshold, computed with pycocotools' floating-point operations.

    Args:
        true_pos, false_pos: (A, T, D) bool, detections sorted by score.
        score: (D,) float64.
        num_positive: (A,) int, ground truths that are not ignored (all > 0).
        rec_thresholds: (R,) float64.

    Returns:
        precision (T, R, A), recall (T, A), scores (T, R, A); 0 at recalls never reached.
    """
    num_areas, num_thresholds, num_dets = true_pos.shape
    if num_dets == 0:
        zeros = np.zeros((num_thresholds, len(rec_thresholds), num_areas))
        return zeros, zeros[:, 0], zeros
    tp = np.cumsum(true_pos, axis=-1).astype(np.float64)
    fp = np.cumsum(false_pos, axis=-1).astype(np.float64)
    rc = tp / num_positive[:, None, None]
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[..., ::-1], axis=-1)[..., ::-1]  # precision envelope
    index = np.stack([np.searchsorted(row, rec_thresholds, side="left") for row in rc.reshape(-1, num_dets)])
    index = index.reshape(num_areas, num_thresholds, -1)
    reached = index < num_dets
    index = np.minimum(index, num_dets - 1)
    precision = np.where(reached, np.take_along_axis(pr, index, axis=-1), 0.0)
    scores = np.where(reached, score[index], 0.0)
    return precision.transpose(1, 2, 0), rc[..., -1].T, scores.transpose(1, 2, 0)
