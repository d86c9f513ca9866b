"""
What each ``[DET]`` token predicts over a dataset, as in the YOLOS paper's analysis::

    yolos-det-token-stats --config-file configs/quickstart.py --output stats/ \\
        --weights output/quickstart/model_final.pth

(also ``python -m yolos_d2.tools.det_token_stats``).

Runs the model over a registered dataset (``--dataset``, default the config's test dataset), its
images resized by the config's test mapper as in the evaluation, ``--batch-size`` images per list
(:class:`~yolos_d2.engine.YOLOSPredictor`), and writes into ``--output``:

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
import dataclasses
import json
import logging
import math
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from detectron2.config import instantiate
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from torchvision.ops import box_convert
from tqdm import tqdm

from ..config import prepare_config
from ..inference import YOLOSPredictor, metadata_of_test_dataset
from . import cli
from .outputs import OutputError, check_outputs

logger = logging.getLogger(__name__)

# COCO's object sizes: a box area (in the image's pixels) below 32^2 is small, from 96^2 large.
COCO_AREA_THRESHOLDS = (32**2, 96**2)
SIZE_NAMES = ("small", "medium", "large")
SIZE_COLOURS = ("tab:blue", "tab:green", "tab:red")
# The files written into --output, in the order they are written.
OUTPUT_FILES = (
    "token_predictions.json",
    "gt_class_distribution.json",
    "token_box_centres.png",
    "token_class_distribution.png",
)


@dataclasses.dataclass
class TokenPredictions:
    """Every ``[DET]`` token's prediction on every image: M = images x K rows, image by image."""

    image_ids: List  # (M,) the dataset's image ids (int for COCO, str for VOC)
    tokens: np.ndarray  # (M,) token index in 0..K-1
    boxes_cxcywh: np.ndarray  # (M, 4) cx, cy, w, h normalised by the image size, in [0, 1]
    boxes_xyxy: np.ndarray  # (M, 4) x0, y0, x1, y1 in the image's pixels
    classes: np.ndarray  # (M,) predicted class id (best class other than no-object)
    scores: np.ndarray  # (M,) its probability

    def to_json(self) -> List[Dict]:
        return [
            {
                "image_id": image_id,
                "token": int(token),
                "box_cxcywh": [round(float(v), 6) for v in cxcywh],
                "box_xyxy": [round(float(v), 2) for v in xyxy],
                "class_id": int(class_id),
                "score": round(float(score), 6),
            }
            for image_id, token, cxcywh, xyxy, class_id, score in zip(
                self.image_ids, self.tokens, self.boxes_cxcywh, self.boxes_xyxy, self.classes, self.scores
            )
        ]


def collect_token_predictions(
    predictor: YOLOSPredictor, dataset_dicts: Sequence[Dict], batch_size: int = 1
) -> TokenPredictions:
    """
    Run ``predictor`` (keeping every token's detection, as by default) on the image of each of
    ``dataset_dicts`` (at least one), ``batch_size`` images per list, and keep every token's
    prediction. Boxes are those of the model's ``Instances``: clipped if ``model.clip_boxes``.
    """
    image_ids, tokens, boxes_cxcywh, boxes_xyxy, classes, scores = [], [], [], [], [], []
    with tqdm(total=len(dataset_dicts), unit="image") as progress:
        for start in range(0, len(dataset_dicts), batch_size):
            batch = dataset_dicts[start : start + batch_size]
            for dataset_dict, instances in zip(batch, predictor([d["file_name"] for d in batch])):
                height, width = instances.image_size
                xyxy = instances.pred_boxes.tensor
                image_ids += [dataset_dict["image_id"]] * len(instances)
                tokens.append(instances.det_tokens.numpy())
                normalised = xyxy / xyxy.new_tensor([width, height, width, height])
                boxes_cxcywh.append(box_convert(normalised, "xyxy", "cxcywh").numpy())
                boxes_xyxy.append(xyxy.numpy())
                classes.append(instances.pred_classes.numpy())
                scores.append(instances.scores.numpy())
            progress.update(len(batch))
    return TokenPredictions(image_ids, *map(np.concatenate, (tokens, boxes_cxcywh, boxes_xyxy, classes, scores)))


def class_distribution(tokens: np.ndarray, classes: np.ndarray, num_tokens: int, num_classes: int) -> np.ndarray:
    """
    Args:
        tokens, classes: (M,) token index and predicted class of each prediction.

    Returns:
        (num_tokens, num_classes) float: row t is the share of token t's predictions in each
        class (a zero row for a token without predictions).
    """
    counts = np.zeros((num_tokens, num_classes))
    np.add.at(counts, (tokens, classes), 1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def gt_class_counts(dataset_dicts: Sequence[Dict], num_classes: int) -> np.ndarray:
    """(num_classes,) int: the number of annotations of each class (contiguous ids) in the dataset."""
    classes = [ann["category_id"] for d in dataset_dicts for ann in d.get("annotations", [])]
    return np.bincount(np.asarray(classes, dtype=np.int64), minlength=num_classes)


def size_categories(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(M, 4) boxes in pixels -> (M,) COCO's size category of each: 0 small, 1 medium, 2 large."""
    areas = (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]) * (boxes_xyxy[:, 3] - boxes_xyxy[:, 1])
    return np.digitize(areas, COCO_AREA_THRESHOLDS)


def _panel_grid(num_panels: int) -> Tuple[int, int]:
    """(rows, cols) of the most square grid holding ``num_panels`` panels."""
    cols = math.ceil(math.sqrt(num_panels))
    return math.ceil(num_panels / cols), cols


def draw_token_box_centres(
    predictions: TokenPredictions, num_tokens: int, path: str, panel_inches: float = 1.2
) -> None:
    """One panel per token: the centres of its boxes over the image (0..1, y down), coloured by COCO size."""
    rows, cols = _panel_grid(num_tokens)
    fig = Figure(figsize=(cols * panel_inches, rows * panel_inches + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    sizes = size_categories(predictions.boxes_xyxy)
    for token, ax in enumerate(axes.flat):
        if token >= num_tokens:
            ax.set_axis_off()
            continue
        for size, colour in enumerate(SIZE_COLOURS):
            centres = predictions.boxes_cxcywh[(predictions.tokens == token) & (sizes == size), :2]
            ax.scatter(centres[:, 0], centres[:, 1], color=colour, s=3, alpha=0.6, linewidths=0)
        ax.set(xlim=(0, 1), ylim=(1, 0), xticks=[], yticks=[], aspect="equal")
        ax.set_title(f"[DET] {token}", fontsize=7, pad=2)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=n) for n, c in zip(SIZE_NAMES, SIZE_COLOURS)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle("Centres of each [DET] token's boxes, by COCO size", fontsize=9)
    fig.savefig(path, dpi=100)


def draw_class_distribution(
    token_distribution: np.ndarray, gt_counts: np.ndarray, class_names: Sequence[str], path: str
) -> None:
    """
    A heat map of each token's predicted-class shares (tokens x classes) above bars of the class
    shares of all predictions and of the ground truth.
    """
    num_tokens, num_classes = token_distribution.shape
    fig = Figure(figsize=(min(4.0 + 0.16 * num_classes, 16.0), 3.5 + 0.06 * num_tokens), layout="constrained")
    heat, bars = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    image = heat.imshow(token_distribution, aspect="auto", cmap="Blues", vmin=0, interpolation="nearest")
    heat.set_ylabel("[DET] token")
    heat.yaxis.set_major_locator(MaxNLocator(integer=True))
    heat.set_title("Predicted classes of each [DET] token (share of its predictions)", fontsize=9)
    fig.colorbar(image, ax=heat, fraction=0.03)
    positions = np.arange(num_classes)
    bars.bar(positions - 0.2, token_distribution.mean(axis=0), width=0.4, label="all tokens")
    bars.bar(positions + 0.2, gt_counts / max(gt_counts.sum(), 1), width=0.4, label="ground truth")
    bars.set_ylabel("share")
    bars.legend(fontsize=7, ncol=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    bars.set_xticks(positions)
    bars.set_xticklabels(class_names, rotation=90, fontsize=max(4, 9 - num_classes // 20))
    fig.savefig(path, dpi=100)


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
    draw_token_box_centres(predictions, num_tokens, centres_path)
    distribution = class_distribution(predictions.tokens, predictions.classes, num_tokens, num_classes)
    draw_class_distribution(distribution, gt_counts, class_names, distribution_path)
    logger.info(f"Wrote the predictions of {num_tokens} [DET] tokens on {len(dataset_dicts)} images to {args.output}")
    return 0


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
