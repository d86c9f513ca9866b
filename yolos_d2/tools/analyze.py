"""
What a detector gets right and wrong on a dataset, in tables, figures and one page::

    yolos-analyze --config-file configs/quickstart.py --weights output/quickstart/model_final.pth \\
        --output output/quickstart/analysis
    yolos-analyze --config-file configs/quickstart.py --output output/quickstart/analysis \\
        --results output/quickstart/inference/coco_instances_results.json

(also ``python -m yolos_d2.tools.analyze``).

With ``--weights``, the model runs on the config's test dataset through its test loader and its
``dataloader.evaluator`` (a detectron2 ``COCOEvaluator``), as ``yolos-train --eval-only`` does,
which writes the detections into ``--output`` (``coco_instances_results.json``, and detectron2's
``instances_predictions.pth``). With ``--results``, the detections are read from such a file
instead, and the config only names the dataset. The ground truth is the test dataset's COCO-format
json (its metadata's ``json_file``); the detections are evaluated as COCO evaluates boxes.

Writes into ``--output``, besides:

- ``index.html``: all of the below on one page, opened from the file system;
- ``class_ap.md``, ``class_ap.csv``, ``class_ap.png``: each class's AP, AP50 and AP75;
- ``precision_recall.png``, ``precision_recall_per_class.png``: COCO's interpolated
  precision-recall curves at IoU 0.5 and 0.75, over the classes and of each class;
- ``errors.md``, ``errors.csv``, ``errors.png``: the errors at IoU 0.5 in the manner of TIDE
  (classification, localisation, both, duplicate, background, missed) and the AP50 gained by
  fixing each kind (see :func:`yolos_d2.evaluation.analysis.analyse_errors`);
- ``confusion_matrix.csv``, ``confusion_matrix.png``: true against predicted classes and the
  background, for the detections scoring at least ``--score-threshold``;
- ``images/most_errors_NN.png``: the ``--num-images`` images with the most errors at
  ``--score-threshold``, their ground truth beside their predictions.

A config, dataset, results file or argument that cannot work, and an ``--output`` that would
replace an input or lie among the dataset's images, are refused before anything is written
(exit status 2). Each file is written atomically: a write that fails (e.g. a full disk) leaves no
partial file and ends the command (exit status 1), naming it.
"""
import argparse
import csv
import io
import logging
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.utils.registry import locate

from ..config import prepare_config
from ..data import read_image
from ..data.validation import check_coco_json, read_coco_json
from ..evaluation import analysis
from ..inference import build_inference_model, metadata_of_test_dataset
from ..utils.file_io import write_atomic
from ..utils.table import format_table
from ..visualization.analysis import (
    DrawnBoxes,
    PageSection,
    draw_class_ap,
    draw_class_precision_recall,
    draw_confusion_matrix,
    draw_error_breakdown,
    draw_ground_truth_and_predictions,
    draw_precision_recall,
    write_page,
)
from . import cli
from .outputs import check_folder_output, check_outputs, config_inputs

logger = logging.getLogger(__name__)

RESULTS_FILE = "coco_instances_results.json"
# What detectron2's COCOEvaluator writes besides, when the model runs.
PREDICTIONS_FILE = "instances_predictions.pth"
TABLES = ("class_ap", "errors")  # each written as .md and .csv
CURVES_FILE, CLASS_CURVES_FILE = "precision_recall.png", "precision_recall_per_class.png"
FIGURES = ("class_ap.png", CURVES_FILE, CLASS_CURVES_FILE, "errors.png", "confusion_matrix.png")
CONFUSION_FILE = "confusion_matrix.csv"
IMAGES_FOLDER = "images"
INDEX_FILE = "index.html"
# The IoUs of the precision-recall curves.
CURVE_IOUS = (0.5, 0.75)
# The kinds of boxes drawn on the images: the detections' outcomes, then the objects found or missed.
KIND_NAMES = (*(outcome.name.lower().replace("_", " ") for outcome in analysis.Outcome), "found", "missed")
FOUND, MISSED = len(analysis.Outcome), len(analysis.Outcome) + 1


def image_file(index: int) -> str:
    """The drawing of the image with the ``index``-th most errors (from 0), relative to ``--output``."""
    return os.path.join(IMAGES_FOLDER, f"most_errors_{index + 1:02d}.png")


def output_files(num_images: int, model_runs: bool) -> List[str]:
    """The files written into ``--output``, relative to it."""
    tables = [f"{table}.{extension}" for table in TABLES for extension in ("md", "csv")]
    evaluator_files = [RESULTS_FILE, PREDICTIONS_FILE] if model_runs else []
    images = [image_file(i) for i in range(num_images)]
    return [*evaluator_files, *tables, *FIGURES, CONFUSION_FILE, *images, INDEX_FILE]


def analysed_dataset(cfg) -> str:
    """The config's one test dataset; ValueError if it names several."""
    names = cfg.dataloader.test.dataset.names
    names = [names] if isinstance(names, str) else list(names)
    if len(names) != 1:
        raise ValueError(
            f"dataloader.test.dataset.names lists {len(names)} datasets: analyse one at a time, e.g. "
            f"dataloader.test.dataset.names={names[0]}"
        )
    return names[0]


def ground_truth_file(dataset_name: str) -> str:
    """The COCO-format json of the registered dataset; ValueError if it has none."""
    json_file = MetadataCatalog.get(dataset_name).get("json_file")
    if json_file is None:
        raise ValueError(
            f"Dataset {dataset_name!r} has no COCO-format json (its metadata's json_file) to compare detections with"
        )
    return json_file


def read_ground_truth(json_file: str, image_root: str) -> analysis.GroundTruth:
    """The annotations of the COCO-format ``json_file``; ValueError if it is not one, or has no objects."""
    coco = read_coco_json(json_file)
    check_coco_json(coco, json_file, image_root)
    ground_truth = analysis.read_ground_truth(coco)
    if not ground_truth.objects_per_class().any():
        raise ValueError(f"{json_file} has no annotations (crowds aside) to compare detections with")
    return ground_truth


def read_results(path: str, ground_truth: analysis.GroundTruth) -> analysis.Detections:
    """The detections of the file ``path`` in COCO's results format; ValueError naming it if they are not."""
    return analysis.read_detections(read_coco_json(path), ground_truth, path)


def coco_evaluator(cfg, output: str) -> COCOEvaluator:
    """The config's evaluator, writing into ``output``; ValueError if it is not a ``COCOEvaluator``."""
    target = cfg.dataloader.evaluator._target_
    evaluator_class = locate(target) if isinstance(target, str) else target
    if not (isinstance(evaluator_class, type) and issubclass(evaluator_class, COCOEvaluator)):
        raise ValueError(
            f"dataloader.evaluator is a {getattr(evaluator_class, '__name__', target)}, which writes no "
            f"{RESULTS_FILE}: analyse its detections in COCO's results format with --results"
        )
    cfg.dataloader.evaluator.output_dir = output
    return instantiate(cfg.dataloader.evaluator)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument(
        "--results", metavar="FILE", help=f"detections in COCO's results format ({RESULTS_FILE}) instead of --weights"
    )
    parser.add_argument("--output", required=True, help="folder for the tables, figures and index.html (created)")
    parser.add_argument(
        "--num-images", type=cli.non_negative_int, default=8, help="how many images with the most errors to draw"
    )
    parser.add_argument(
        "--score-threshold",
        type=cli.fraction,
        default=0.5,
        help="the detections drawn and counted in the confusion matrix score at least this (0 to 1, default 0.5)",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = cli.parse_args(parser, argv)
    model_runs = args.results is None
    with cli.usage_errors(parser):  # a config or dataset mistake, bad results, an output that must not be written
        if args.results and args.weights:
            raise ValueError("give --weights (to run the model) or --results (its detections), not both")
        cfg = prepare_config(args.config_file, args.opts, args.weights, args.device)
        dataset_name = analysed_dataset(cfg)
        dataset_dicts = DatasetCatalog.get(dataset_name)
        json_file = ground_truth_file(dataset_name)
        ground_truth = read_ground_truth(json_file, MetadataCatalog.get(dataset_name).get("image_root", ""))
        detections = None if model_runs else read_results(args.results, ground_truth)
        images = [d["file_name"] for d in dataset_dicts]
        inputs = [*images, json_file, *config_inputs(args.config_file, cfg), *([] if model_runs else [args.results])]
        outputs = [os.path.join(args.output, name) for name in output_files(args.num_images, model_runs)]
        check_folder_output(args.output)
        check_outputs([args.output, *outputs], inputs, sorted({os.path.dirname(f) for f in images}))
        if model_runs:
            metadata_of_test_dataset(cfg)  # the dataset's classes are the model's
            model, evaluator = build_inference_model(cfg), coco_evaluator(cfg, args.output)
    if model_runs:
        inference_on_dataset(model, instantiate(cfg.dataloader.test), evaluator)
        detections = read_results(os.path.join(args.output, RESULTS_FILE), ground_truth)
    file_names = {d["image_id"]: d["file_name"] for d in dataset_dicts}
    try:
        write_analysis(ground_truth, detections, file_names, args, model_runs, title=f"Analysis on {dataset_name}")
    except OSError as e:
        logger.error("%s", e)
        return 1
    logger.info(f"Wrote the analysis of {len(detections.scores)} detections to {os.path.join(args.output, INDEX_FILE)}")
    return 0


def write_analysis(
    ground_truth: analysis.GroundTruth,
    detections: analysis.Detections,
    file_names: Dict,
    args: argparse.Namespace,
    model_ran: bool,
    title: str,
) -> None:
    """Compute and write every table and figure into ``args.output``, then the page showing them, titled ``title``."""
    output = args.output
    precision = analysis.coco_precision(ground_truth, detections)
    summary = analysis.average_precisions(precision)
    class_ap = analysis.class_average_precisions(precision)
    class_table = class_ap_table(ground_truth, detections, class_ap)
    write_table(output, "class_ap", *class_table)
    draw_class_ap(ground_truth.class_names, class_ap["AP"], class_ap["AP50"], os.path.join(output, "class_ap.png"))
    write_curves(precision, summary, ground_truth.class_names, output)

    errors = analysis.analyse_errors(ground_truth, detections)
    error_summary = analysis.summarise_errors(ground_truth, detections, errors)
    errors_table = error_table(error_summary)
    write_table(output, "errors", *errors_table)
    draw_error_breakdown(
        analysis.ERROR_TYPES,
        [error_summary.counts[e] for e in analysis.ERROR_TYPES],
        [100 * error_summary.delta_ap50[e] for e in analysis.ERROR_TYPES],
        os.path.join(output, "errors.png"),
    )

    matrix = analysis.confusion_matrix(ground_truth, detections, args.score_threshold)
    labels = [*ground_truth.class_names, "background"]
    rows = [[label, *row] for label, row in zip(labels, matrix.tolist())]
    write_text(os.path.join(output, CONFUSION_FILE), csv_text(["true \\ predicted", *labels], rows))
    draw_confusion_matrix(matrix, labels, os.path.join(output, "confusion_matrix.png"))

    captions = draw_images_with_most_errors(ground_truth, detections, errors, file_names, args)
    sections = page_sections(ground_truth, detections, summary, class_table, errors_table, captions, args, model_ran)
    write_page(title, sections, os.path.join(output, INDEX_FILE))


def write_curves(precision: np.ndarray, summary: Dict[str, float], class_names: Sequence[str], output: str) -> None:
    """Draw the precision-recall curves at :data:`CURVE_IOUS`, over the classes and of each class."""
    curves = {iou: analysis.precision_recall_curves(precision, iou) for iou in CURVE_IOUS}
    recall = analysis.RECALL_THRESHOLDS
    overall = {
        f"IoU {iou}: AP {percent(summary[name])}": curves[iou][1] for iou, name in zip(CURVE_IOUS, ("AP50", "AP75"))
    }
    draw_precision_recall(recall, overall, "Precision-recall over the classes", os.path.join(output, CURVES_FILE))
    per_class = {f"IoU {iou}": curves[iou][0] for iou in CURVE_IOUS}
    draw_class_precision_recall(recall, per_class, class_names, os.path.join(output, CLASS_CURVES_FILE))


def draw_images_with_most_errors(
    ground_truth: analysis.GroundTruth,
    detections: analysis.Detections,
    errors: analysis.ErrorAnalysis,
    file_names: Dict,
    args: argparse.Namespace,
) -> List[str]:
    """Draw the ``args.num_images`` images with the most errors at ``args.score_threshold``; their captions."""
    counts = analysis.image_error_counts(ground_truth, detections, errors, args.score_threshold)
    captions = []
    for rank, image in enumerate(analysis.images_with_most_errors(counts, args.num_images)):
        image_id = ground_truth.image_ids[image]
        captions.append(f"{os.path.basename(file_names[image_id])} (image {image_id}): {counts[image]} errors")
        path, threshold = os.path.join(args.output, image_file(rank)), args.score_threshold
        draw_image(ground_truth, detections, errors, image, file_names[image_id], threshold, captions[-1], path)
    return captions


def draw_image(
    ground_truth: analysis.GroundTruth,
    detections: analysis.Detections,
    errors: analysis.ErrorAnalysis,
    image: int,
    file_name: str,
    score_threshold: float,
    title: str,
    path: str,
) -> None:
    """
    Draw the image of index ``image``, read from ``file_name``: its objects, found or missed by
    the detections scoring at least ``score_threshold``, beside those detections and their outcomes.
    """
    names = ground_truth.class_names
    objects = np.flatnonzero(ground_truth.image == image)
    found = analysis.objects_found(detections, errors, score_threshold)[objects]
    crowd = ground_truth.crowd[objects]
    truth = DrawnBoxes(
        ground_truth.boxes[objects],
        [names[k] + (" (crowd)" if is_crowd else "") for k, is_crowd in zip(ground_truth.category[objects], crowd)],
        np.select([crowd, found], [analysis.Outcome.IGNORED, FOUND], MISSED),
    )
    shown = np.flatnonzero((detections.image == image) & (detections.scores >= score_threshold))
    predictions = DrawnBoxes(
        detections.boxes[shown],
        [f"{names[k]} {score:.2f}" for k, score in zip(detections.category[shown], detections.scores[shown])],
        errors.outcome[shown],
    )
    draw_ground_truth_and_predictions(read_image(file_name, "RGB"), truth, predictions, KIND_NAMES, title, path)


def percent(value: float) -> str:
    """A fraction 0 to 1 as percentage points, one decimal; "n/a" for nan."""
    return "n/a" if np.isnan(value) else f"{100 * value:.1f}"


Table = Tuple[List[str], List[List[object]]]  # (header, rows)


def class_ap_table(
    ground_truth: analysis.GroundTruth, detections: analysis.Detections, class_ap: Dict[str, np.ndarray]
) -> Table:
    """Each class's APs (percentage points), objects (crowds aside) and detections evaluated."""
    objects = ground_truth.objects_per_class()
    detected = np.bincount(detections.category, minlength=ground_truth.num_classes)
    rows = [
        [name, *(percent(class_ap[ap][k]) for ap in ("AP", "AP50", "AP75")), int(objects[k]), int(detected[k])]
        for k, name in enumerate(ground_truth.class_names)
    ]
    return ["class", "AP", "AP50", "AP75", "objects", "detections"], rows


def error_table(summary: analysis.ErrorSummary) -> Table:
    """Each error type's count and the AP50 gained by fixing it (percentage points), then all of them."""
    rows = [[error, summary.counts[error], percent(summary.delta_ap50[error])] for error in analysis.ERROR_TYPES]
    rows.append(["all", sum(summary.counts.values()), percent(summary.delta_ap50["all"])])
    return ["error", "count", "dAP50"], rows


def csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    return text.getvalue()


def write_text(path: str, text: str) -> None:
    """Write ``text`` to the file ``path`` atomically."""
    write_atomic(path, lambda f: f.write(text.encode()))


def write_table(output: str, name: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write the table as ``<name>.md`` and ``<name>.csv`` into the folder ``output``."""
    write_text(os.path.join(output, f"{name}.md"), format_table(header, rows) + "\n")
    write_text(os.path.join(output, f"{name}.csv"), csv_text(header, rows))


ERRORS_TEXT = (
    "Each detection that finds no object at IoU 0.5 is one error, the first of: duplicate (IoU >= 0.5 with an "
    "object of its class that a higher scoring detection found), classification (IoU >= 0.5 with an object of "
    "another class), localisation (IoU 0.1 to 0.5 with an object of its class), both (IoU 0.1 to 0.5 with an object "
    "of another class), background (IoU < 0.1 with every object). An object that no detection finds, nor a "
    "classification or localisation error aims at, is missed. dAP50 is the AP50 gained by fixing the errors of a "
    "kind (as TIDE, Bolya et al. 2020, fixes them), in percentage points."
)


def page_sections(
    ground_truth: analysis.GroundTruth,
    detections: analysis.Detections,
    summary: Dict[str, float],
    class_ap: Table,
    errors: Table,
    image_captions: Sequence[str],
    args: argparse.Namespace,
    model_ran: bool,
) -> List[PageSection]:
    """The sections of the page: everything written, by relative paths."""
    num_objects = int(ground_truth.objects_per_class().sum())
    threshold = f"scoring at least {args.score_threshold:g}"
    return [
        PageSection(
            "Summary",
            f"{len(ground_truth.image_ids)} images, {num_objects} objects (crowds aside), {len(detections.scores)} "
            f"detections evaluated as COCO evaluates boxes (at most {analysis.MAX_DETECTIONS} per image and class).",
            table=(["AP", "AP50", "AP75"], [[percent(summary[name]) for name in ("AP", "AP50", "AP75")]]),
            links=[(RESULTS_FILE, "the detections (COCO's results format)")] if model_ran else (),
        ),
        PageSection(
            "AP of each class",
            "In percentage points; n/a for a class without objects.",
            table=class_ap,
            links=[("class_ap.md", "Markdown"), ("class_ap.csv", "CSV")],
            figures=[("class_ap.png", "AP and AP50 of each class, the best first")],
        ),
        PageSection(
            "Precision-recall curves",
            "COCO's interpolated precision (the best at this recall or a higher one) at recalls 0 to 1, by 0.01.",
            figures=[
                (CURVES_FILE, "Over the classes (their mean): the area under each curve is the AP at its IoU"),
                (CLASS_CURVES_FILE, "Of each class"),
            ],
        ),
        PageSection(
            "Errors",
            ERRORS_TEXT,
            table=errors,
            links=[("errors.md", "Markdown"), ("errors.csv", "CSV")],
            figures=[("errors.png", "The errors of each kind and the AP50 gained by fixing them")],
        ),
        PageSection(
            "Confusion matrix",
            f"Detections {threshold} paired one to one with the objects of their image at IoU >= 0.5, the closest "
            "first, whatever their classes; the background row counts detections left unpaired, the background "
            "column objects left unpaired.",
            links=[(CONFUSION_FILE, "CSV")],
            figures=[("confusion_matrix.png", "Each row's shares; counts in the cells")],
        ),
        PageSection(
            "Images with the most errors",
            f"Errors seen when drawing the detections {threshold}: false positives, and objects none of them found."
            + ("" if image_captions else " No image has any."),
            figures=[(image_file(i), caption) for i, caption in enumerate(image_captions)],
        ),
    ]


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
