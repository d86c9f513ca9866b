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
replace one of its files, is refused before anything is done (exit status 2). Every token's
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
from ..visualization import draw_class_distribution, draw_token_box_centres
from . import cli
from .outputs import OutputError, check_outputs

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
    parser.add_argument("--max-images", type=int, help="use only the first N images of the dataset")
    cli.add_batch_size_argument(parser)
    args = cli.parse_args(parser, argv)
    if args.max_images is not None and args.max_images < 1:
        parser.error(f"--max-images must be at least 1, got {args.max_images}")

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
    try:
        check_outputs([args.output, *outputs], inputs, sorted({os.path.dirname(d["file_name"]) for d in dataset_dicts}))
    except OutputError as e:
        parser.error(str(e))
    predictions_path, gt_path, centres_path, distribution_path = outputs
    class_names = metadata.thing_classes
    with cli.usage_errors(parser):
        predictor = YOLOSPredictor(cfg, max_size=None)  # the images as the evaluation sees them
    predictions = collect_token_predictions(predictor, dataset_dicts, args.batch_size)

    num_tokens, num_classes = predictor.model.detector.backbone.num_det_tokens, len(class_names)
    gt_counts = gt_class_counts(dataset_dicts, num_classes)
    os.makedirs(args.output, exist_ok=True)
    with open(predictions_path, "w") as f:
        json.dump(predictions.to_json(), f)
    with open(gt_path, "w") as f:
        json.dump(
            {
                "dataset": dataset_names if isinstance(dataset_names, str) else list(dataset_names),
                "num_images": len(dataset_dicts),
                "classes": list(class_names),
                "counts": gt_counts.tolist(),
            },
            f,
        )
    sizes = size_categories(predictions.boxes_xyxy)
    draw_token_box_centres(predictions.tokens, predictions.boxes_cxcywh[:, :2], sizes, num_tokens, centres_path)
    distribution = class_distribution(predictions.tokens, predictions.classes, num_tokens, num_classes)
    draw_class_distribution(distribution, gt_counts, class_names, distribution_path)
    logger.info(f"Wrote the predictions of {num_tokens} [DET] tokens on {len(dataset_dicts)} images to {args.output}")
    return 0


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
