"""
Registering a user's COCO-format or Pascal VOC dataset, safely callable from a config file, and
the checks a run makes of its datasets at start, before anything is loaded or written.
"""
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES
from detectron2.utils.file_io import PathManager

from .synthetic_shapes import SYNTHETIC_SHAPES_SPLITS
from .validation import DatasetError, coco_class_names, load_checked_coco_json
from .voc import load_checked_voc_instances

__all__ = [
    "check_dataset_files",
    "check_datasets",
    "check_num_classes",
    "register_coco_dataset",
    "register_voc_dataset",
    "thing_classes",
]

DatasetNames = Union[str, Sequence[str]]

# The metadata keys of the files and folders that a registered dataset is read from
# (detectron2's and yolos_d2's COCO-format and Pascal VOC registrations), and whether each is a folder.
_PATH_KEYS = {"json_file": False, "image_root": True, "dirname": True}


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


def check_datasets(dataset_names: DatasetNames, num_classes: int) -> None:
    """
    The checks of a run's registered datasets at start, before they are loaded: the files they
    are read from exist (:func:`check_dataset_files`) and they have ``num_classes`` classes
    (:func:`check_num_classes`, which reads and checks the json of a COCO-format dataset).
    Raises :class:`~yolos_d2.data.validation.DatasetError`.
    """
    check_dataset_files(dataset_names)
    check_num_classes(dataset_names, num_classes)


def check_dataset_files(dataset_names: DatasetNames) -> None:
    """
    Raise :class:`~yolos_d2.data.validation.DatasetError` if a file or folder that the
    registered datasets are read from (the metadata's ``json_file`` and ``image_root``, or
    ``dirname`` for Pascal VOC) does not exist, naming each with its dataset and where it was
    looked for; for those under detectron2's datasets folder (``$DETECTRON2_DATASETS``, by
    default ``./datasets``), also how they are laid out there and how to point elsewhere. The
    quick start's synthetic splits, written when first loaded, pass.
    """
    missing = []  # (dataset name, path, whether a folder)
    for name in _names(dataset_names):
        if name in SYNTHETIC_SHAPES_SPLITS:
            continue
        metadata = MetadataCatalog.get(name)
        for key, is_folder in _PATH_KEYS.items():
            path = metadata.get(key)
            if path is not None and not PathManager.exists(path):
                missing.append((name, path, is_folder))
    if not missing:
        return
    listed = "; ".join(f"{path} of {name!r}{_looked_for(path)}" for name, path, _ in missing)
    raise DatasetError(
        f"Dataset files do not exist: {listed}. {_where_to_put([(path, is_folder) for _, path, is_folder in missing])}"
        " register your own dataset with yolos_d2.data.register_coco_dataset (docs/your_data.md)"
    )


def _where_to_put(missing: List[Tuple[str, bool]]) -> str:
    """
    For the (path, whether a folder) of ``missing`` files under detectron2's datasets folder,
    how they are laid out there and how to point elsewhere; for others, to check them.
    """
    root = os.path.abspath(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
    expected = [
        os.path.relpath(os.path.abspath(path), root) + ("/" if is_folder else "")
        for path, is_folder in missing
        if os.path.abspath(path).startswith(root + os.sep)
    ]
    if not expected:
        return "Check the paths given when registering, or"
    setting = os.getenv("DETECTRON2_DATASETS")
    described = f"set to {setting}" if setting else "not set, so ./datasets"
    return (
        f"detectron2's builtin datasets and the configs' Pascal VOC are read from $DETECTRON2_DATASETS ({described}), "
        f"where these are expected: {', '.join(expected)}. Put them there or set DETECTRON2_DATASETS to the folder "
        "that holds them, or"
    )


def _looked_for(path: str) -> str:
    """Where a relative ``path`` was looked for: ' (looked for at /abs/path)'; '' for an absolute one."""
    return "" if os.path.isabs(path) or "://" in path else f" (looked for at {os.path.abspath(path)})"


def thing_classes(dataset_name: str) -> Optional[List[str]]:
    """
    The class names of the registered dataset ``dataset_name``: its metadata's
    ``thing_classes``; for a COCO-format json not loaded yet, its categories' names in the order
    of their ids (:func:`~yolos_d2.data.validation.coco_class_names`), which are then set as its
    ``thing_classes``, as loading it sets them. None for a dataset with neither.
    """
    metadata = MetadataCatalog.get(dataset_name)
    if metadata.get("thing_classes") is None and metadata.get("json_file") is not None:
        metadata.thing_classes = coco_class_names(metadata.json_file, metadata.get("image_root", ""))
    return metadata.get("thing_classes")


def check_num_classes(dataset_names: DatasetNames, num_classes: int) -> None:
    """
    Raise :class:`~yolos_d2.data.validation.DatasetError` (a ``ValueError``) if the registered
    datasets do not have ``num_classes`` classes (:func:`thing_classes`).
    """
    for name in _names(dataset_names):
        classes = thing_classes(name)
        if classes is not None and len(classes) != num_classes:
            shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise DatasetError(
                f"Dataset {name!r} has {len(classes)} classes ({shown}) but the model predicts "
                f"{num_classes}: set model.detector.num_classes={len(classes)}"
            )


def _names(dataset_names: DatasetNames) -> List[str]:
    """A dataset name or a sequence of them (as in ``dataloader.*.dataset.names``), as a list."""
    return [dataset_names] if isinstance(dataset_names, str) else list(dataset_names)
