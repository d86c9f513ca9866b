"""
Draw a registered dataset's images with their ground-truth boxes and class names, to check a
dataset (e.g. your own registration) before training::

    yolos-browse-data --config-file configs/quickstart.py --output output/browse
    yolos-browse-data --config-file configs/quickstart.py --augmented --num-images 16 --output output/browse_augmented

(also ``python -m yolos_d2.tools.browse_data``).

The images are the first ``--num-images`` of ``--dataset`` (a registered dataset; default the
config's training dataset, ``dataloader.train.dataset.names``), read as the config's training
loader reads its dataset (``dataloader.train.dataset``: e.g. images without annotations left out).
Each is drawn with its boxes, each class in its colour and with its name (the dataset's
``thing_classes``; an id it does not name is drawn as "unknown class N"):

- by default, as registered: every annotation's box (crowd ones labelled "(crowd)");
- with ``--augmented``, as the model sees it in training: the image and boxes after the config's
  training mapper (``dataloader.train.mapper``: its random augmentations, new ones each run), its
  ``instances.gt_boxes`` (crowd annotations left out, boxes clipped to the image).

Writes ``<index>_<image name>.png`` per image into ``--output``, ``--scale`` times the size of the
image drawn. A dataset that is not registered, whose files do not exist or whose classes are not
the model's (``model.detector.num_classes``, as training checks), and an ``--output`` that is or
lies inside a folder of the dataset's images or would replace an input are refused before
anything is drawn (exit status 2). Each drawing is written atomically; an image that cannot be
read, mapped, drawn or written is reported and skipped, and the exit status is then 1.
"""
import argparse
import logging
import os
from typing import Callable, Dict

import numpy as np
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb

from ..config import prepare_config
from ..data import check_datasets, read_image
from ..visualization import MAX_DRAWING_PIXELS, save_image
from ..visualization.ground_truth import draw_annotations, draw_ground_truth_instances
from . import cli
from .outputs import check_folder_output, check_outputs

logger = logging.getLogger(__name__)

DEFAULT_NUM_IMAGES = 8


def output_name(index: int, file_name: str) -> str:
    """The drawing's file name: the image's index in the dataset and its name, e.g. ``000003_photo.png``."""
    return f"{index:06d}_{os.path.splitext(os.path.basename(file_name))[0]}.png"


def raw_drawer(metadata, scale: float) -> Callable[[Dict], np.ndarray]:
    """A function drawing a dataset dict's image and annotations as registered."""

    def draw(dataset_dict: Dict) -> np.ndarray:
        image = read_image(dataset_dict["file_name"], format="RGB")
        return draw_annotations(image, dataset_dict.get("annotations", []), metadata, scale)

    return draw


def augmented_drawer(mapper, metadata, scale: float) -> Callable[[Dict], np.ndarray]:
    """A function drawing a dataset dict as ``mapper`` (a training ``DatasetMapper``) gives it to the model."""

    def draw(dataset_dict: Dict) -> np.ndarray:
        mapped = mapper(dataset_dict)
        image = np.ascontiguousarray(convert_image_to_rgb(mapped["image"].permute(1, 2, 0), mapper.image_format))
        if "instances" not in mapped:  # an image registered without an annotations list
            return draw_annotations(image, [], metadata, scale)
        return draw_ground_truth_instances(image, mapped["instances"], metadata, scale)

    return draw


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser, weights=False, device=False)
    parser.add_argument("--output", required=True, help="folder for the drawings (created)")
    parser.add_argument("--dataset", help="a registered dataset (default: the config's training dataset)")
    parser.add_argument(
        "--num-images",
        type=cli.positive_int,
        default=DEFAULT_NUM_IMAGES,
        metavar="N",
        help=f"draw the first N images of the dataset (default {DEFAULT_NUM_IMAGES})",
    )
    parser.add_argument(
        "--augmented",
        action="store_true",
        help="draw the images and boxes after the config's training mapper (dataloader.train.mapper)",
    )
    cli.add_scale_argument(parser, MAX_DRAWING_PIXELS)
    args = cli.parse_args(parser, argv)

    dataset_override = [f"dataloader.train.dataset.names={args.dataset}"] if args.dataset else []
    with cli.usage_errors(parser):  # a config mistake, a dataset that is not registered or not the model's
        cfg = prepare_config(args.config_file, args.opts + dataset_override)
        names = cfg.dataloader.train.dataset.names
        check_datasets(names, cfg.model.detector.num_classes)
        dataset_dicts = instantiate(cfg.dataloader.train.dataset)[: args.num_images]
        mapper = instantiate(cfg.dataloader.train.mapper) if args.augmented else None
    if not dataset_dicts:
        parser.error(f"dataset {names} has no images")
    outputs = [os.path.join(args.output, output_name(i, d["file_name"])) for i, d in enumerate(dataset_dicts)]
    images = [d["file_name"] for d in dataset_dicts]
    with cli.usage_errors(parser):  # an output that must not be written
        check_folder_output(args.output)
        image_folders = sorted({os.path.dirname(image) for image in images})
        check_outputs([args.output, *outputs], [*images, args.config_file], image_folders)

    metadata = MetadataCatalog.get(names if isinstance(names, str) else names[0])
    draw = augmented_drawer(mapper, metadata, args.scale) if args.augmented else raw_drawer(metadata, args.scale)
    skipped = []
    for dataset_dict, output in zip(dataset_dicts, outputs):
        try:
            save_image(draw(dataset_dict), output)
        except (OSError, ValueError) as e:
            logger.warning(f"Skipped {dataset_dict['file_name']}: {e}")
            skipped.append(dataset_dict["file_name"])
    summary = f"Wrote {len(outputs) - len(skipped)} of {len(outputs)} images of {names} to {args.output}"
    return cli.finish(logger, summary, skipped)


console_main = cli.console_script(main)

if __name__ == "__main__":
    console_main()
