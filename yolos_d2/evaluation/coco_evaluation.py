"""detectron2's ``COCOEvaluator`` computing its APs with :class:`FastCOCOeval`."""
from unittest import mock

from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation import coco_evaluation

from .fast_cocoeval import FastCOCOeval

__all__ = ["FastCOCOEvaluator"]


class FastCOCOevalMaxDets(FastCOCOeval, coco_evaluation.COCOevalMaxDets):
    """detectron2's ``COCOevalMaxDets`` (summaries at a maxDets other than 100), fast."""


class FastCOCOEvaluator(COCOEvaluator):
    """
    A ``COCOEvaluator`` that runs :class:`FastCOCOeval` instead of pycocotools' ``COCOeval``:
    the same numbers as the official COCO API (bit for bit for boxes, unlike detectron2's
    ``use_fast_impl=True``, which also needs its compiled extension), several times faster.

    detectron2 has no argument for the ``COCOeval`` class: ``_evaluate_predictions_on_coco``
    picks ``COCOeval`` (or, with ``use_fast_impl``, ``COCOeval_opt``) and ``COCOevalMaxDets`` from
    its module's globals, in detectron2 0.6 directly and in later versions through
    ``_eval_predictions``' ``cocoeval_fn``. So this class passes ``use_fast_impl=False`` and
    overrides only the public ``evaluate()``, which swaps those two module globals for their fast
    subclasses while it runs (not thread-safe: a plain ``COCOEvaluator`` evaluating in another
    thread meanwhile would use them too). detectron2 still logs that it uses the "official" API.
    Segmentation and keypoint tasks run pycocotools' own code.
    """

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, **kwargs):
        """Arguments as ``COCOEvaluator``'s, except ``use_fast_impl``."""
        super().__init__(dataset_name, tasks, distributed, output_dir, use_fast_impl=False, **kwargs)

    def evaluate(self, img_ids=None):
        with mock.patch.multiple(coco_evaluation, COCOeval=FastCOCOeval, COCOevalMaxDets=FastCOCOevalMaxDets):
            return super().evaluate(img_ids)
