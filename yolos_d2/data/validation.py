"""
Checks of a detection dataset, run when its dataset dicts are loaded (before training or
evaluation starts).

A COCO-format json file (:func:`load_checked_coco_json`) must be valid JSON with ``images`` and
``categories``; every image needs ``id``, ``file_name`` and a ``width`` and ``height`` in whole
pixels; every annotation an ``id``, ``image_id``, a ``category_id`` among the categories and a
``bbox`` of four finite numbers; image, annotation and category ids must be unique. Anything
else is an error naming the file, the ids and what is allowed.

The dataset dicts of any format (also Pascal VOC, see :mod:`yolos_d2.data.voc`) are then checked
with :func:`check_dataset_dicts`:

- image files that do not exist: an error with their count and the first few paths;
- boxes without width or height, or wholly outside their image: dropped; boxes that extend past
  their image: clipped to it; both logged with their count and first annotation ids;
- one log line counts the images, the boxes to train on and the crowd annotations, which
  training leaves out; a warning says so if no box is left to train on, and
  :func:`check_trainable_boxes` makes that an error for a training set.

Images that exist but cannot be decoded are found only when read: the training loader skips
them (see :mod:`yolos_d2.data.build`).
"""
import json
import logging
import math
import os
from collections import Counter, defaultdict
from typing import Callable, Dict, List, Sequence

from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode

__all__ = [
    "check_coco_json",
    "check_dataset_dicts",
    "check_image_files",
    "check_trainable_boxes",
    "clip_boxes_to_images",
    "load_checked_coco_json",
    "read_coco_json",
]

logger = logging.getLogger(__name__)

# How many paths or ids a message lists.
_SHOWN = 5


def load_checked_coco_json(json_file: str, image_root: str, dataset_name: str) -> List[Dict]:
    """
    detectron2's ``load_coco_json`` (which also sets the dataset's ``thing_classes``), with the
    checks of this module. Annotations keep their ``id`` from the json file.
    """
    check_coco_json(read_coco_json(json_file), json_file, image_root)
    # detectron2 takes only the file's path, so it parses the file once more.
    dataset_dicts = load_coco_json(json_file, image_root, dataset_name, extra_annotation_keys=["id"])
    check_dataset_dicts(dataset_dicts, dataset_name)
    return dataset_dicts


def read_coco_json(json_file: str) -> Dict:
    """The content of ``json_file``; ``ValueError`` naming the line and column if it is not valid JSON."""
    with open(json_file) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{json_file} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None


def check_coco_json(coco: Dict, json_file: str, image_root: str) -> None:
    """
    Raise ``ValueError`` naming ``json_file``, the ids and what is allowed if ``coco`` (its
    content) is not a detection dataset in COCO format (see the module's docstring). Values are
    shown as JSON. ``image_root`` is only used to name image files.
    """
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(f"{json_file} has no 'images' list: a COCO-format json is an object with 'images', "
                         "'annotations' and 'categories'")
    if not coco.get("categories"):
        raise ValueError(
            f"{json_file} has no 'categories': a COCO-format json names its classes in "
            '"categories": [{"id": 1, "name": "cat"}, ...]'
        )
    images, categories, annotations = coco["images"], coco["categories"], coco.get("annotations", [])
    files = {image.get("id"): image.get("file_name") for image in images}

    def describe_image(image: Dict) -> str:
        return f"image {image.get('id')} ({image.get('file_name')})"

    def describe_annotation(anno: Dict) -> str:
        image_id = anno.get("image_id")
        file_name = files.get(image_id)
        where = f" ({os.path.join(image_root, file_name)})" if file_name is not None else ""
        return f"annotation {anno.get('id')} of image {image_id}{where}"

    _check_keys(json_file, "category", categories, ("id", "name"), lambda c: f"category {c.get('id')}")
    _check_keys(json_file, "image", images, ("id", "file_name", "width", "height"), describe_image)
    _check_keys(json_file, "annotation", annotations, ("id", "image_id", "category_id", "bbox"), describe_annotation)
    _check_unique_ids(json_file, "category", categories, lambda c: c["name"])
    _check_unique_ids(json_file, "image", images, lambda image: image["file_name"])
    _check_unique_ids(json_file, "annotation", annotations, lambda anno: f"image {anno['image_id']}")

    bad_sizes = [
        f"{describe_image(image)} has {key} {json.dumps(image[key])}"
        for image in images
        for key in ("width", "height")
        if not (_is_number(image[key]) and image[key] > 0 and float(image[key]).is_integer())
    ]
    _raise_if_any(json_file, "image", "whose width or height is not a positive whole number of pixels", bad_sizes)

    known = {c["id"] for c in categories}
    unknown = [f"{describe_annotation(a)} has category_id {json.dumps(a['category_id'])}" for a in annotations
               if a["category_id"] not in known]
    ids = ", ".join(str(c["id"]) for c in categories)
    _raise_if_any(json_file, "annotation", f"with a category_id that is not in its 'categories' (ids {ids})", unknown)

    bad_boxes = [
        f"{describe_annotation(a)} has bbox {json.dumps(a['bbox'])}"
        for a in annotations
        if not (isinstance(a["bbox"], list) and len(a["bbox"]) == 4 and all(map(_is_number, a["bbox"])))
    ]
    problem = "with a bbox that is not four finite numbers [x, y, width, height]"
    _raise_if_any(json_file, "annotation", problem, bad_boxes)


def _is_number(value) -> bool:
    """Whether ``value`` is a finite int or float (not a bool, a string or None)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_keys(json_file: str, kind: str, items: List[Dict], keys: Sequence[str], describe: Callable) -> None:
    required = set(keys)
    lacking = [
        f"{describe(item)} has no {', '.join(repr(key) for key in keys if key not in item)}"
        for item in items
        if not required.issubset(item)
    ]
    names = ", ".join(map(repr, keys))
    _raise_if_any(json_file, kind, f"without one of the required keys {names}", lacking)


def _check_unique_ids(json_file: str, kind: str, items: List[Dict], describe: Callable) -> None:
    """Raise if an id is used twice, listing each such id with ``describe`` of the items having it."""
    counts = Counter(item["id"] for item in items)
    if len(counts) == len(items):
        return
    by_id = defaultdict(list)
    for item in items:
        if counts[item["id"]] > 1:
            by_id[item["id"]].append(describe(item))
    repeated = [f"{id_} ({', '.join(map(str, described))})" for id_, described in by_id.items()]
    _raise_if_any(json_file, f"{kind} id", "used more than once (ids must be unique)", repeated)


def _raise_if_any(json_file: str, noun: str, problem: str, listed: List[str]) -> None:
    """``ValueError``: '<json_file>: <count> <noun>s <problem>: <the first listed>; ...', if ``listed``."""
    if listed:
        shown = "; ".join(listed[:_SHOWN]) + ("; ..." if len(listed) > _SHOWN else "")
        raise ValueError(f"{json_file}: {_count(len(listed), noun)} {problem}: {shown}")


def check_dataset_dicts(dataset_dicts: List[Dict], dataset_name: str) -> None:
    """
    In place, the checks of loaded dataset dicts of any format: images exist
    (:func:`check_image_files`), boxes are clipped or dropped (:func:`clip_boxes_to_images`),
    and a summary is logged: images, boxes to train on, crowd annotations (which training leaves
    out), with a warning if no box is left to train on.
    """
    check_image_files(dataset_dicts, dataset_name)
    clip_boxes_to_images(dataset_dicts, dataset_name)
    annotations = [anno for record in dataset_dicts for anno in record["annotations"]]
    crowd = sum(map(_is_crowd, annotations))
    logger.info(
        f"Dataset {dataset_name!r}: {_count(len(dataset_dicts), 'image')}, {_count(len(annotations), 'annotation')}: "
        f"{_count(len(annotations) - crowd, 'box', 'boxes')} to train on and {_count(crowd, 'crowd annotation')} "
        "(iscrowd=1), which training leaves out"
    )
    if crowd == len(annotations):
        if annotations:
            why = f"all of its {len(annotations)} annotations are crowd (iscrowd=1)"
        else:
            why = "it has no annotations"
        logger.warning(
            f"Dataset {dataset_name!r} has no box to train on: {why}. It can be evaluated on, not trained on"
        )


def check_trainable_boxes(dataset_dicts: Sequence[Dict]) -> None:
    """
    Raise ``ValueError`` saying why if no annotation of the training set ``dataset_dicts`` is a
    box that training learns from (all are crowd annotations, or there are none). Dicts without
    an ``annotations`` key (not a detection dataset, as detectron2 tells them apart) pass.
    """
    detection = [record for record in dataset_dicts if "annotations" in record]
    annotations = [anno for record in detection for anno in record["annotations"]]
    if not detection or not all(map(_is_crowd, annotations)):
        return
    if annotations:
        why = f"{_count(len(annotations), 'annotation')}, all crowd (iscrowd=1), which training leaves out"
    else:
        why = "no annotations"
    folders = sorted({os.path.dirname(record["file_name"]) for record in detection})
    raise ValueError(
        f"The training dataset has no box to train on: {_count(len(detection), 'image')}, {why}. "
        f"Its images are in {_first(folders)}. A dataset without boxes can be evaluated on, not trained on"
    )


def _is_crowd(anno: Dict) -> bool:
    """Whether training leaves the annotation out, as detectron2's ``DatasetMapper`` does."""
    return anno.get("iscrowd", 0) != 0


def check_image_files(dataset_dicts: List[Dict], dataset_name: str) -> None:
    """Raise ``FileNotFoundError`` with the count and the first paths of images that do not exist."""
    missing = [d["file_name"] for d in dataset_dicts if not os.path.isfile(d["file_name"])]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(dataset_dicts)} images of dataset {dataset_name!r} do not exist: "
            + _first(missing)
        )


def clip_boxes_to_images(dataset_dicts: List[Dict], dataset_name: str) -> None:
    """
    In place: clip each annotation's box (four numbers in its ``bbox_mode``, XYWH_ABS or
    XYXY_ABS, in pixels) to its image's ``width`` x ``height``, and drop annotations left without
    area: zero or negative width or height, or wholly outside the image. Logs how many were
    clipped and dropped.
    """
    clipped, dropped, total = [], [], 0
    for record in dataset_dicts:
        kept = []
        for anno in record["annotations"]:
            if anno["bbox_mode"] not in (BoxMode.XYWH_ABS, BoxMode.XYXY_ABS):
                raise ValueError(f"Annotation {anno.get('id')} of dataset {dataset_name!r} has bbox_mode "
                                 f"{anno['bbox_mode']}; expected XYWH_ABS or XYXY_ABS")
            xywh = anno["bbox_mode"] == BoxMode.XYWH_ABS
            x1, y1, a, b = (float(v) for v in anno["bbox"])
            box = [x1, y1, x1 + a, y1 + b] if xywh else [x1, y1, a, b]
            inside = [max(box[0], 0.0), max(box[1], 0.0), min(box[2], record["width"]), min(box[3], record["height"])]
            if not (inside[2] > inside[0] and inside[3] > inside[1]):
                dropped.append(anno.get("id"))
                continue
            if inside != box:
                x1, y1, x2, y2 = inside
                anno["bbox"] = [x1, y1, x2 - x1, y2 - y1] if xywh else inside
                clipped.append(anno.get("id"))
            kept.append(anno)
        total += len(record["annotations"])
        record["annotations"] = kept
    if dropped:
        logger.warning(
            f"Dataset {dataset_name!r}: dropped {len(dropped)} of {total} annotations whose box has no area "
            f"inside its image (zero or negative width or height, or wholly outside it): ids {_first(dropped)}"
        )
    if clipped:
        logger.warning(
            f"Dataset {dataset_name!r}: clipped {len(clipped)} of {total} boxes that extend past their "
            f"image to its borders: ids {_first(clipped)}"
        )


def _count(n: int, singular: str, plural: str = "") -> str:
    """'1 image', '2 images' ('2 boxes' with ``plural``)."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def _first(ids: List) -> str:
    return ", ".join(map(str, ids[:_SHOWN])) + (", ..." if len(ids) > _SHOWN else "")
