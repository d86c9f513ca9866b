"""
What each ``[DET]`` token predicts over a dataset, as in the YOLOS paper's analysis::

    yolos-det-token-stats --config-file configs/quickstart.py --output stats/ \\
        --weights output/quickstart/model_final.pth

(also ``python -m yolos_d2.tools.det_token_stats``).

Runs the model over a registered dataset (``--dataset``, default the config's test dataset), its
images resized by the config's test mapper as in the evaluation, ``--batch-size`` images per list
(:class:`~yolos_d2.inference.YOLOSPredictor`), and writes into ``--output``:

- ``token_predictions.json``: one entry per token per image: "image_id", "token",
  "box_cxcywh" (normalised by the image size), "box_xyxy" (pixels), "class_id", "score";
- ``gt_class_distribution.json``: the dataset's annotations per class;
- ``token_box_centres.png``: per token, the centres of its boxes in the image (normalised, y down),
  coloured by COCO's size categories (small, medium, large: areas below 32^2, 96^2 pixels, above);
- ``token_class_distribution.png``: per token, the share of each predicted class, beside the
  ground-truth class distribution.

An ``--output`` that is or lies inside a folder of the dataset's images, or a file that would
replace one of its files, the config file or the weights, is refused before anything is done
(exit status 2). Each file is written atomically: a write that fails (e.g. a full disk) leaves no
partial file and ends the command (exit status 1), naming it. Every token's
prediction counts, whatever its score, as in the paper. It replaces the original
repository's ``cocoval_predjson_generation.py``, ``cocoval_gtclsjson_generation.py`` and
``visualize_dettoken_dist.py``.
"""
import argparse
import json
import logging
import os

from detectron2.config import instantiate

from ..config import prepare_config
from ..inference import YOLOSPredictor, metadata_of_test_dataset
from ..inference.token_stats import class_distribution, collect_token_predictions, gt_class_counts, size_categories
from ..utils.file_io import write_atomic
from ..visualization import draw_class_distribution, draw_token_box_centres
from . import cli
from .outputs import check_folder_output, check_outputs, config_inputs

logger = logging.getLogger(__name__)

# The files written into --output, in the order they are written.
OUTPUT_FILES = (
    "token_predictions.json",
    "gt_class_distribution.json",
    "token_box_centres.png",
    "token_class_distribution.png",
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--output", required=True, help="folder for the JSON files and figures (created)")
    parser.add_argument("--dataset", help="a registered dataset (default: the config's test dataset)")
    parser.add_argument("--max-images", type=cli.positive_int, help="use only the first N images of the dataset")
    cli.add_batch_size_argument(parser)
    args = cli.parse_args(parser, argv)

    dataset_override = [f"dataloader.test.dataset.names={args.dataset}"] if args.dataset else []
    with cli.usage_errors(parser):
        cfg = prepare_config(args.config_file, args.opts + dataset_override, args.weights, args.device)
        dataset_dicts = instantiate(cfg.dataloader.test.dataset)[: args.max_images]
        metadata = metadata_of_test_dataset(cfg)
    dataset_names = cfg.dataloader.test.dataset.names
    if not dataset_dicts:
        parser.error(f"dataset {dataset_names} has no images")
    outputs = [os.path.join(args.output, name) for name in OUTPUT_FILES]
    inputs = [d["file_name"] for d in dataset_dicts] + ([metadata.json_file] if metadata.get("json_file") else [])
    image_folders = sorted({os.path.dirname(d["file_name"]) for d in dataset_dicts})
    with cli.usage_errors(parser):  # an output that must not be written, weights that do not fit
        check_folder_output(args.output)
        check_outputs([args.output, *outputs], [*inputs, *config_inputs(args.config_file, cfg)], image_folders)
        predictor = YOLOSPredictor(cfg, max_size=None)  # the images as the evaluation sees them
    predictions = collect_token_predictions(predictor, dataset_dicts, args.batch_size)

    predictions_path, gt_path, centres_path, distribution_path = outputs
    num_tokens, class_names = predictor.model.detector.backbone.num_det_tokens, metadata.thing_classes
    gt_counts = gt_class_counts(dataset_dicts, len(class_names))
    gt_record = {
        "dataset": dataset_names if isinstance(dataset_names, str) else list(dataset_names),
        "num_images": len(dataset_dicts),
        "classes": list(class_names),
        "counts": gt_counts.tolist(),
    }
    try:
        write_json(predictions.to_json(), predictions_path)
        write_json(gt_record, gt_path)
        sizes = size_categories(predictions.boxes_xyxy)
        draw_token_box_centres(predictions.tokens, predictions.boxes_cxcywh[:, :2], sizes, num_tokens, centres_path)
        distribution = class_distribution(predictions.tokens, predictions.classes, num_tokens, len(class_names))
        draw_class_distribution(distribution, gt_counts, class_names, distribution_path)
    except OSError as e:
        logger.error("%s", e)
        return 1
    logger.info(f"Wrote the predictions of {num_tokens} [DET] tokens on {len(dataset_dicts)} images to {args.output}")
    return 0


def write_json(record, path: str) -> None:
    """Write ``record`` to the file ``path`` as JSON, atomically."""
    write_atomic(path, lambda f: f.write(json.dumps(record).encode()))


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
