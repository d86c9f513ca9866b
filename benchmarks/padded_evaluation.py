"""
How much the original's batched evaluation moves AP: a trained model evaluated one image at a
time, and in pairs padded to a common size without a mask, as the original evaluates YOLOS-Ti
(``--batch_size 2 --eval`` on 8 GPUs)::

    python -m benchmarks padded-evaluation --config-file configs/quickstart.py \\
        --weights output/quickstart/model_final.pth

Pairs are formed as the original's ``DistributedSampler(shuffle=False)`` forms them on
``--processes`` processes: process r takes images r, r + P, r + 2P, ... (the list padded to whole
rounds by repeating its start) and batches them two by two. Each image is scored once, with the
partner of its first pair.

Where every image of a dataset has the same size (the quick start's), pairs never pad: with
``--crop-seed``, each image is first cropped to a random region whose sides are multiples of 16
pixels from half to all of the image's (its boxes clipped, boxes left empty dropped), written
with its annotations to ``--work-dir`` and registered as a dataset, so that partners differ in
size as COCO images do. The table gives both evaluations' AP, AP50 and AP75 and how many images
were padded.
"""
import argparse
import contextlib
import copy
import io
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from omegaconf import DictConfig
from PIL import Image

from yolos_d2.config import prepare_config
from yolos_d2.data import register_coco_dataset
from yolos_d2.inference import build_inference_model
from yolos_d2.tools import cli
from yolos_d2.utils.table import format_table

__all__ = ["original_eval_pairs", "run", "main"]


def original_eval_pairs(num_images: int, processes: int, per_process: int = 2) -> List[Tuple[int, ...]]:
    """
    The batches of image indices the original's evaluation loader forms: a
    ``DistributedSampler(shuffle=False)`` on ``processes`` processes (the index list padded to a
    multiple of ``processes`` by repeating its start, process r taking every ``processes``-th
    index from r) and batches of ``per_process`` without dropping the last.
    """
    per_rank = -(-num_images // processes)
    indices = list(range(num_images))
    indices += indices[: per_rank * processes - num_images]
    batches = []
    for rank in range(processes):
        mine = indices[rank::processes]
        batches += [tuple(mine[i : i + per_process]) for i in range(0, len(mine), per_process)]
    return batches


def crop_dataset(name: str, work_dir: str, seed: int, multiple: int = 16) -> str:
    """
    ``name``'s images each cropped to a random region of sides from half to all of the image's,
    in multiples of ``multiple`` pixels, with boxes clipped to it and empty ones dropped; written
    as a COCO json and images under ``work_dir`` and registered. Returns the new dataset's name.
    """
    rng = np.random.default_rng(seed)
    images_dir = os.path.join(work_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    classes = MetadataCatalog.get(name).thing_classes
    images, annotations = [], []
    for record in DatasetCatalog.get(name):
        pixels = np.asarray(Image.open(record["file_name"]).convert("RGB"))
        height, width = pixels.shape[:2]
        h, w = (int(rng.integers(max(side // 2 // multiple, 1), side // multiple + 1)) * multiple for side in (height, width))
        y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        file_name = f"{record['image_id']}.png"
        Image.fromarray(pixels[y0 : y0 + h, x0 : x0 + w]).save(os.path.join(images_dir, file_name))
        images.append({"id": record["image_id"], "file_name": file_name, "height": h, "width": w})
        for ann in record.get("annotations", []):
            x1, y1, x2, y2 = BoxMode.convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYXY_ABS)
            x1, x2 = np.clip([x1 - x0, x2 - x0], 0, w)
            y1, y2 = np.clip([y1 - y0, y2 - y0], 0, h)
            if x2 > x1 and y2 > y1:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": record["image_id"], "category_id": ann["category_id"],
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "area": float((x2 - x1) * (y2 - y1)), "iscrowd": ann.get("iscrowd", 0),
                })
    categories = [{"id": i, "name": c} for i, c in enumerate(classes)]
    json_file = os.path.join(work_dir, "annotations.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return register_coco_dataset(f"{name}_cropped_{seed}", json_file, images_dir)


def evaluate(model, inputs: Sequence[Dict], batches: Sequence[Tuple[int, ...]], evaluator) -> Tuple[Dict, int]:
    """
    Run ``model`` on ``batches`` of ``inputs`` (mapped dataset dicts) and evaluate each image's
    predictions from its first batch. Returns the evaluator's results and the number of images
    that were padded beyond their own size.
    """
    evaluator.reset()
    done, padded = set(), 0
    for batch in batches:
        sizes = [tuple(inputs[i]["image"].shape[-2:]) for i in batch]
        with torch.no_grad():
            outputs = model([inputs[i] for i in batch])
        for index, size, output in zip(batch, sizes, outputs):
            if index in done:
                continue
            done.add(index)
            padded += size != tuple(max(s) for s in zip(*sizes))
            evaluator.process([inputs[index]], [output])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' summary: the table gives its AP
        return evaluator.evaluate(), padded


@dataclass(frozen=True)
class PaddedEvaluationRow:
    """One way of evaluating: how many of the images were ``padded`` beyond their own size, and the AP (0-100)."""

    name: str
    padded: int
    ap: float
    ap50: float
    ap75: float


@dataclass(frozen=True)
class PaddedEvaluationResult:
    """The evaluated ``dataset`` (cropped or not), its number of ``images``, and a row per way of evaluating."""

    dataset: str
    images: int
    rows: List[PaddedEvaluationRow]


def run(
    cfg: DictConfig,
    model: torch.nn.Module,
    processes: int,
    crop_seed: Optional[int] = None,
    work_dir: Optional[str] = None,
) -> PaddedEvaluationResult:
    """
    Evaluate ``model`` on the config's test set one image at a time, then in the pairs of the
    original's evaluation on ``processes`` processes; with ``crop_seed``, on the set's images
    cropped first (:func:`crop_dataset`, written to ``work_dir``, default a temporary folder).
    """
    name = cfg.dataloader.test.dataset.names
    if crop_seed is not None:
        name = crop_dataset(name, work_dir or tempfile.mkdtemp(prefix="padded_eval_"), crop_seed)
    mapper = instantiate(cfg.dataloader.test.mapper)
    inputs = [mapper(dict(record)) for record in DatasetCatalog.get(name)]
    evaluator_cfg = copy.deepcopy(cfg.dataloader.evaluator)
    evaluator_cfg.dataset_name = name
    evaluator = instantiate(evaluator_cfg)

    rows = []
    cases = [
        ("one image at a time", [(i,) for i in range(len(inputs))]),
        (f"pairs, as on {processes} processes", original_eval_pairs(len(inputs), processes)),
    ]
    for label, batches in cases:
        results, padded = evaluate(model, inputs, batches, evaluator)
        bbox = results["bbox"]
        rows.append(PaddedEvaluationRow(label, padded, bbox["AP"], bbox["AP50"], bbox["AP75"]))
    return PaddedEvaluationResult(name, len(inputs), rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks padded-evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_config_arguments(parser)
    parser.add_argument(
        "--processes",
        type=cli.positive_int,
        default=8,
        metavar="N",
        help="the original's processes (GPUs), which form the pairs (default 8)",
    )
    parser.add_argument(
        "--crop-seed",
        type=cli.non_negative_int,
        metavar="SEED",
        help="crop the images to random sizes with this seed, 0 or more, first (default: no crop)",
    )
    parser.add_argument(
        "--work-dir", metavar="DIR", help="where the cropped dataset is written (default: a temporary folder)"
    )
    args = cli.parse_args(parser, argv)
    with cli.usage_errors(parser):
        cfg = prepare_config(args.config_file, args.opts, args.weights, args.device)
        model = build_inference_model(cfg)
    result = run(cfg, model, args.processes, args.crop_seed, args.work_dir)

    rows = [
        [row.name, f"{row.padded}/{result.images}", *(f"{ap:.2f}" for ap in (row.ap, row.ap50, row.ap75))]
        for row in result.rows
    ]
    print(f"dataset {result.dataset}: {result.images} images")
    print(format_table(["evaluation", "images padded", "AP", "AP50", "AP75"], rows))
