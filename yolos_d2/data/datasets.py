"""Registering a user's COCO-format or Pascal VOC dataset, safely callable from a config file."""
import os
from typing import Callable, Dict, List, Sequence, Union

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES

from .validation import load_checked_coco_json
from .voc import load_checked_voc_instances

__all__ = ["check_num_classes", "register_coco_dataset", "register_voc_dataset"]


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
    return _register(
        name,
        lambda: load_checked_coco_json(json_file, image_root, name),
        dict(json_file=json_file, image_root=image_root),
        evaluator_type="coco",
    )


def register_voc_dataset(
    name: str, dirname: str, split: str, year: int, class_names: Sequence[str] = VOC_CLASS_NAMES
) -> str:
    """
    Register the Pascal VOC split ``split`` (e.g. "trainval") of the folder ``dirname`` (e.g.
    ``datasets/VOC2007``) under ``name``, as detectron2's ``register_pascal_voc`` does, for
    training and ``PascalVOCDetectionEvaluator`` (``year`` 2007 evaluates with VOC2007's 11-point
    AP), but checked when its dataset dicts are loaded (see
    :func:`yolos_d2.data.voc.load_checked_voc_instances`). Registering the same split again is a
    no-op; registering another one under a taken name is an error.

    Returns:
        ``name``, so that a config can write ``names=register_voc_dataset(...)``.
    """
    dirname, class_names = os.path.abspath(dirname), list(class_names)
    return _register(
        name,
        lambda: load_checked_voc_instances(dirname, split, class_names, name),
        dict(dirname=dirname, split=split, year=year, thing_classes=class_names),
        evaluator_type="pascal_voc",
    )


def _register(name: str, load: Callable[[], List[Dict]], identity: Dict, **metadata) -> str:
    """
    Register ``load`` under ``name`` with the metadata ``identity`` and ``metadata``, unless
    ``name`` is registered already with the same ``identity``; ``ValueError`` if with another.
    """
    if name in DatasetCatalog.list():
        registered = {key: MetadataCatalog.get(name).get(key) for key in identity}
        if registered != identity:
            raise ValueError(
                f"Dataset {name!r} is already registered with {_describe(registered)}; choose another name for "
                f"{_describe(identity)}"
            )
        return name
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(**identity, **metadata)
    return name


def _describe(metadata: Dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in metadata.items())


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
