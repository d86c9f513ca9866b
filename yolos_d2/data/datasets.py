"""Registering a user's COCO-format dataset, safely callable from a config file."""
import os
from typing import Sequence, Union

from detectron2.data import DatasetCatalog, MetadataCatalog

from .validation import load_checked_coco_json

__all__ = ["check_num_classes", "register_coco_dataset"]


def register_coco_dataset(name: str, json_file: str, image_root: str) -> str:
    """
    Register a COCO-format detection dataset under ``name`` for training and COCO evaluation,
    as detectron2's ``register_coco_instances`` does, but checked when its dataset dicts are
    loaded (see :func:`yolos_d2.data.validation.load_checked_coco_json`). Class names and their
    order come from the json's categories; set ``model.detector.num_classes`` to their count.

    Unlike detectron2's call, registering the same files again (e.g. when a config is loaded
    twice) is a no-op; registering other files under a taken name is an error.

    Returns:
        ``name``, so that a config can write ``names=register_coco_dataset(...)``.
    """
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    if name in DatasetCatalog.list():
        metadata = MetadataCatalog.get(name)
        registered = (metadata.get("json_file"), metadata.get("image_root"))
        if registered != (json_file, image_root):
            raise ValueError(
                f"Dataset {name!r} is already registered with json_file={registered[0]!r} and "
                f"image_root={registered[1]!r}; choose another name for {json_file!r}"
            )
        return name
    DatasetCatalog.register(name, lambda: load_checked_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")
    return name


def check_num_classes(dataset_names: Union[str, Sequence[str]], num_classes: int) -> None:
    """
    Raise ``ValueError`` if the registered datasets (already loaded, so that their metadata
    holds ``thing_classes``) do not have ``num_classes`` classes.
    """
    for name in [dataset_names] if isinstance(dataset_names, str) else dataset_names:
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is not None and len(classes) != num_classes:
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise ValueError(
                f"Dataset {name!r} has {len(classes)} classes ({shown}) but the model predicts "
                f"{num_classes}: set model.detector.num_classes={len(classes)}"
            )
