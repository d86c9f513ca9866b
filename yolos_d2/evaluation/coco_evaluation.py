"""detectron2's ``COCOEvaluator`` computing its APs with faster-coco-eval."""
import itertools
import json
import logging
import os

from detectron2.evaluation import COCOEvaluator
from faster_coco_eval import COCO, COCOeval_faster

from yolos_d2.utils.file_io import write_atomic

__all__ = ["FastCOCOEvaluator"]

logger = logging.getLogger(__name__)


class FastCOCOEvaluator(COCOEvaluator):
    """
    A ``COCOEvaluator`` whose bbox, segm and keypoints APs come from faster-coco-eval's
    ``COCOeval_faster`` (matching and accumulation in C++) instead of pycocotools' ``COCOeval``:
    the official COCO API's numbers, several times faster (boxes: docs/performance.md). Its
    precisions leave out the ``np.spacing(1)`` pycocotools adds to their denominator, so they and
    the APs may differ from pycocotools' in the last bits (relatively, by a few times 2.2e-16).

    It overrides detectron2's ``_eval_predictions`` (the same in detectron2 0.6 and later
    versions), so no module of detectron2 or pycocotools is patched. As with detectron2's:
    ``output_dir`` receives ``coco_instances_results.json``, the log the per-category AP table,
    and a ``max_dets_per_image`` other than 100 is the limit the AP is summarised at. The
    summary of each task (pycocotools prints it) goes to this module's log.
    """

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, **kwargs):
        """
        Arguments as ``COCOEvaluator``'s (``max_dets_per_image``, ``kpt_oks_sigmas``), except
        ``use_fast_impl``.
        """
        super().__init__(dataset_name, tasks, distributed, output_dir, use_fast_impl=False, **kwargs)
        # faster-coco-eval's COCO: pycocotools' API over the same annotations, as its COCOeval needs.
        self._coco_api = COCO(self._coco_api.dataset)

    def _eval_predictions(self, predictions, img_ids=None):
        """
        Fill ``self._results`` with the metrics of each task (``self._tasks``, or those the
        predictions have), on the images ``img_ids`` (default all).

        Args:
            predictions: one dict per image, holding the image's detections as COCO json dicts
                of contiguous category ids under ``"instances"`` (``process()``'s).
        """
        coco_results = list(itertools.chain.from_iterable(p["instances"] for p in predictions))
        tasks = self._tasks or self._tasks_from_predictions(coco_results)
        self._to_dataset_category_ids(coco_results)
        if self._output_dir:
            self._write_results(coco_results)
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        self._logger.info("Evaluating predictions with faster-coco-eval ...")
        for task in sorted(tasks):
            coco_eval = self._evaluate_task(coco_results, task, img_ids) if coco_results else None
            self._results[task] = self._derive_coco_results(
                coco_eval, task, class_names=self._metadata.get("thing_classes")
            )

    def _to_dataset_category_ids(self, coco_results) -> None:
        """Replace, in place, the contiguous category ids of ``coco_results`` by the dataset's."""
        if not hasattr(self._metadata, "thing_dataset_id_to_contiguous_id"):
            return
        dataset_ids = {v: k for k, v in self._metadata.thing_dataset_id_to_contiguous_id.items()}
        for result in coco_results:
            if result["category_id"] not in dataset_ids:
                raise ValueError(
                    f"A prediction has class {result['category_id']}, but dataset '{self._metadata.name}' "
                    f"has {len(dataset_ids)} classes: 0 to {len(dataset_ids) - 1}"
                )
            result["category_id"] = dataset_ids[result["category_id"]]

    def _write_results(self, coco_results) -> None:
        """Write ``coco_results`` (COCO json dicts) to ``<output_dir>/coco_instances_results.json``."""
        os.makedirs(self._output_dir, exist_ok=True)
        path = os.path.join(self._output_dir, "coco_instances_results.json")
        self._logger.info(f"Saving results to {path}")
        write_atomic(path, lambda f: f.write(json.dumps(coco_results).encode()))

    def _evaluate_task(self, coco_results, task: str, img_ids) -> COCOeval_faster:
        """
        faster-coco-eval's ``COCOeval`` of ``coco_results`` (COCO json dicts of the dataset's
        category ids, at least one) on ``task`` ("bbox", "segm" or "keypoints"), summarised.
        """
        if task == "segm":
            # Without their boxes, so that the area ranges (small, medium, large) use the masks' areas.
            coco_results = [{k: v for k, v in result.items() if k != "bbox"} for result in coco_results]
        coco_eval = COCOeval_faster(
            self._coco_api,
            self._coco_api.loadRes(coco_results),
            task,
            print_function=logger.info,
            kpt_oks_sigmas=list(self._kpt_oks_sigmas) or None,
        )
        if task == "keypoints":
            self._check_keypoint_counts(coco_results, len(coco_eval.params.kpt_oks_sigmas))
        # Every category, as pycocotools (faster-coco-eval's default for keypoints: those with annotations).
        coco_eval.params.catIds = sorted(self._coco_api.getCatIds())
        if task != "keypoints":
            coco_eval.params.maxDets = self._max_dets_per_image
        if img_ids is not None:
            coco_eval.params.imgIds = img_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        return coco_eval

    def _check_keypoint_counts(self, coco_results, num_sigmas: int) -> None:
        """Raise ``ValueError`` unless predictions, ground truths and the ``num_sigmas`` OKS sigmas agree."""
        counts = {
            "the predictions": len(coco_results[0]["keypoints"]) // 3,
            "the ground truths": len(next(iter(self._coco_api.anns.values()))["keypoints"]) // 3,
            "the OKS sigmas (kpt_oks_sigmas)": num_sigmas,
        }
        if len(set(counts.values())) > 1:
            raise ValueError(
                "Keypoint evaluation needs as many keypoints everywhere, but "
                + ", ".join(f"{where} have {count}" for where, count in counts.items())
            )
