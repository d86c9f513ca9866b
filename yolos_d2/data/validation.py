"""
Checks of a detection dataset, run when its dataset dicts are loaded (before training or
evaluation starts). Each problem is a :class:`DatasetError` (a ``ValueError``) naming the file,
the item and what is allowed, or a ``FileNotFoundError`` for images that do not exist.

A COCO-format json file (:func:`load_checked_coco_json`) must be valid JSON: an object whose
``images`` and ``categories`` (not empty) are lists of objects, as is ``annotations`` if present.
Every image needs ``id``, ``file_name`` (a non-empty string) and a ``width`` and ``height`` in
whole pixels; every annotation an ``id``, the ``image_id`` of one of the images, a
``category_id`` among the categories and a ``bbox`` of four finite numbers, and if present an
``iscrowd`` of 0 or 1 (false or true), an ``area`` that is a finite number >= 0 and an ``ignore``
of 0 (detectron2 loads no ignored annotations); every category an ``id`` and a ``name``. Ids are
integers or strings, of one kind within a list, and unique within it. Values are checked as
``json.load`` gives them. The file is read once: the checked content is turned into dataset
dicts as detectron2's ``load_coco_json`` turns the file (:func:`coco_dataset_dicts`).

The dataset dicts of any format (also Pascal VOC, see :mod:`yolos_d2.data.voc`) are then checked
with :func:`check_dataset_dicts`:

- image files that do not exist: an error with their count and the first few paths. Every file
  is checked, by :data:`FILE_CHECK_THREADS` threads at once, so that storage that answers each
  look-up slowly (a network file system) is waited on in parallel;
- boxes without width or height, or wholly outside their image: dropped; boxes that extend past
  their image: clipped to it; both logged with their count and first annotation ids;
- one log line counts the images, the boxes to train on and the crowd annotations, which
  training leaves out; a warning says so if no box is left to train on, and
  :func:`check_trainable_boxes` makes that an error for a training set.

Images that exist but cannot be decoded are found only when read: the training loader skips
them (see :mod:`yolos_d2.data.build`), the evaluation stops naming the file (see
:func:`yolos_d2.data.read_image`).
"""
import json
import logging
import math
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from operator import itemgetter
from typing import Any, Callable, Dict, List, Optional, Sequence

import pycocotools.mask as mask_util
from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode

__all__ = [
    "FILE_CHECK_THREADS",
    "DatasetError",
    "check_coco_json",
    "check_dataset_dicts",
    "check_image_files",
    "check_trainable_boxes",
    "clip_boxes_to_images",
    "coco_class_names",
    "coco_dataset_dicts",
    "load_checked_coco_json",
    "read_coco_json",
]

logger = logging.getLogger(__name__)

# How many paths or ids a message lists.
_SHOWN = 5
# How many characters of a JSON value a message shows.
_SHOWN_CHARACTERS = 60
# Threads that look image files up at once: a look-up waits on the storage (a network file
# system takes about a millisecond), not on the CPU.
FILE_CHECK_THREADS = 32
# Image files each thread looks up per task.
_FILES_PER_TASK = 256


class DatasetError(ValueError):
    """A dataset that cannot be used as it is; the message names the file, the item and what is wrong."""


_NUMBER_TYPES = frozenset((int, float))
_ID_TYPES = frozenset((int, str))


def _is_number(value) -> bool:
    """Whether ``value`` is a finite int or float (not a bool, a string or None)."""
    return type(value) in _NUMBER_TYPES and math.isfinite(value)


def _is_id(value) -> bool:
    return type(value) in _ID_TYPES


def _is_text(value) -> bool:
    return isinstance(value, str) and value != ""


def _is_side(value) -> bool:
    return _is_number(value) and value > 0 and float(value).is_integer()


def _is_box(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and _NUMBER_TYPES.issuperset(map(type, value))
        and all(map(math.isfinite, value))
    )


def _is_crowd_flag(value) -> bool:
    return isinstance(value, int) and value in (0, 1)  # bools are ints


def _is_area(value) -> bool:
    return _is_number(value) and value >= 0


_ID = (_is_id, "an integer or a string")
_TEXT = (_is_text, "a non-empty string")
_SIDE = (_is_side, "a positive whole number of pixels")

# Per list of a COCO-format json: the keys each of its objects must have, and what each key's
# value must be (when present): (test, description).
_REQUIRED_KEYS = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}
_VALUES = {
    "images": {"id": _ID, "file_name": _TEXT, "width": _SIDE, "height": _SIDE},
    "annotations": {
        "id": _ID,
        "image_id": _ID,
        "category_id": _ID,
        "bbox": (_is_box, "four finite numbers [x, y, width, height]"),
        "iscrowd": (_is_crowd_flag, "0 or 1 (or false or true)"),
        "area": (_is_area, "a finite number >= 0"),
        "ignore": (lambda value: value == 0, "0 (detectron2 loads no ignored annotations)"),
    },
    "categories": {"id": _ID, "name": _TEXT},
}
# The keys shown to identify an item of a list, with the test of their values.
_IDENTIFYING = (("id", _is_id), ("image_id", _is_id), ("file_name", _is_text), ("name", _is_text))
_NOUNS = {"images": "image", "annotations": "annotation", "categories": "category"}
_COCO_FORMAT = "a COCO-format json is an object with 'images', 'annotations' and 'categories' lists"


def load_checked_coco_json(json_file: str, image_root: str, dataset_name: str) -> List[Dict]:
    """
    What detectron2's ``load_coco_json`` returns and sets (the dataset's ``thing_classes``), with
    the checks of this module, reading the file once. Annotations keep their ``id`` from the json
    file.
    """
    coco = read_coco_json(json_file)
    check_coco_json(coco, json_file, image_root)
    dataset_dicts = coco_dataset_dicts(coco, image_root, dataset_name)
    check_dataset_dicts(dataset_dicts, dataset_name)
    return dataset_dicts


def coco_dataset_dicts(coco: Dict, image_root: str, dataset_name: str) -> List[Dict]:
    """
    The dataset dicts of ``coco``, the content of a COCO-format json checked by
    :func:`check_coco_json`, equal to those of detectron2's ``load_coco_json(json_file,
    image_root, dataset_name, extra_annotation_keys=["id"])``: one per image in the order of
    their ids, its annotations in the file's order, with contiguous category ids (0 to the number
    of categories - 1, in the order of their ids), ``bbox_mode`` XYWH_ABS, keypoints moved by
    half a pixel, polygons of fewer than 3 points left out and annotations left without one
    dropped (logged). Sets the dataset's ``thing_classes`` and
    ``thing_dataset_id_to_contiguous_id`` as it does. The annotations' keypoint lists are changed
    in place, as detectron2 changes them.
    """
    categories = sorted(coco["categories"], key=itemgetter("id"))
    contiguous_id = {category["id"]: index for index, category in enumerate(categories)}
    metadata = MetadataCatalog.get(dataset_name)
    metadata.thing_classes = [category["name"] for category in categories]
    metadata.thing_dataset_id_to_contiguous_id = contiguous_id
    annotations_of = {image["id"]: [] for image in coco["images"]}
    for anno in coco.get("annotations", []):
        annotations_of[anno["image_id"]].append(anno)
    dataset_dicts, without_polygons = [], []
    for image in sorted(coco["images"], key=itemgetter("id")):
        instances = []
        for anno in annotations_of[image["id"]]:
            instance = _instance(anno, contiguous_id)
            if instance is None:
                without_polygons.append(anno["id"])
            else:
                instances.append(instance)
        dataset_dicts.append(
            {
                "file_name": os.path.join(image_root, image["file_name"]),
                "height": image["height"],
                "width": image["width"],
                "image_id": image["id"],
                "annotations": instances,
            }
        )
    if without_polygons:
        logger.warning(
            f"Dataset {dataset_name!r}: dropped {_count(len(without_polygons), 'annotation')} whose segmentation "
            f"has no polygon of 3 or more points: ids {_first(without_polygons)}"
        )
    return dataset_dicts


# The keys of a COCO annotation that detectron2's load_coco_json keeps as they are, in its order.
_KEPT_ANNOTATION_KEYS = ("iscrowd", "bbox", "keypoints", "category_id", "id")


def _instance(anno: Dict, contiguous_id: Dict) -> Optional[Dict]:
    """
    The COCO annotation ``anno`` as detectron2's ``load_coco_json`` loads it (see
    :func:`coco_dataset_dicts`), or None for a segmentation of polygons none of which has 3
    points, which it leaves out.
    """
    instance = {key: anno[key] for key in _KEPT_ANNOTATION_KEYS if key in anno}
    segmentation = anno.get("segmentation")
    if segmentation:
        if not isinstance(segmentation, dict):
            segmentation = [polygon for polygon in segmentation if len(polygon) % 2 == 0 and len(polygon) >= 6]
            if not segmentation:
                return None
        elif isinstance(segmentation["counts"], list):  # uncompressed RLE
            segmentation = mask_util.frPyObjects(segmentation, *segmentation["size"])
        instance["segmentation"] = segmentation
    keypoints = anno.get("keypoints")
    if keypoints:
        # (x, y, visibility) triples: COCO's integer pixel indices moved to pixel centres.
        for index in range(len(keypoints)):
            if index % 3 != 2:
                keypoints[index] += 0.5
        instance["keypoints"] = keypoints
    instance["bbox_mode"] = BoxMode.XYWH_ABS
    instance["category_id"] = contiguous_id[instance["category_id"]]
    return instance


def coco_class_names(json_file: str, image_root: str) -> List[str]:
    """
    The class names of the COCO-format ``json_file``, checked by :func:`check_coco_json`: its
    categories' names in the order of their ids, as detectron2's ``load_coco_json`` sets them as
    ``thing_classes``.
    """
    coco = read_coco_json(json_file)
    check_coco_json(coco, json_file, image_root)
    return [category["name"] for category in sorted(coco["categories"], key=lambda category: category["id"])]


def read_coco_json(json_file: str) -> Dict:
    """The content of ``json_file``; :class:`DatasetError` naming the line and column if it is not valid JSON."""
    with open(json_file) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{json_file} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None


def check_coco_json(coco: Any, json_file: str, image_root: str) -> None:
    """
    Raise :class:`DatasetError` naming ``json_file``, the items (by list and index, or by id)
    and what is allowed if ``coco`` (its content) is not a detection dataset in COCO format (see
    the module's docstring). Values are shown as JSON. ``image_root`` is only used to name image
    files.
    """
    _check_lists(coco, json_file)
    for key in _REQUIRED_KEYS:
        _check_objects(json_file, key, coco.get(key, []))
    images, categories, annotations = coco["images"], coco["categories"], coco.get("annotations", [])
    files = {image["id"]: image["file_name"] for image in images}

    def describe_annotation(index: int, anno: Dict) -> str:
        image_id = anno["image_id"]
        where = f" ({os.path.join(image_root, files[image_id])})" if image_id in files else ""
        return f"annotation {_shown(anno['id'])} of image {_shown(image_id)}{where}"

    _check_unique_ids(json_file, "category", categories, lambda c: c["name"])
    _check_unique_ids(json_file, "image", images, lambda image: image["file_name"])
    _check_unique_ids(json_file, "annotation", annotations, lambda anno: f"image {_shown(anno['image_id'])}")
    image_ids = [image["id"] for image in images]
    problem = "whose image_id is not the id of one of its 'images'"
    describe = partial(_where, "annotations", field="image_id")
    _check_references(json_file, annotations, "image_id", "image", image_ids, describe, problem)
    category_ids = [c["id"] for c in categories]
    problem = f"with a category_id that is not in its 'categories' (ids {_first(category_ids)})"
    _check_references(json_file, annotations, "category_id", "category", category_ids, describe_annotation, problem)


def _check_lists(coco: Any, json_file: str) -> None:
    """``coco`` is an object with the lists 'images' and 'categories' (not empty), and 'annotations' if any."""
    if not isinstance(coco, dict):
        raise DatasetError(f"{json_file} holds {_kind(coco)}: {_COCO_FORMAT}")
    if "images" not in coco:
        raise DatasetError(f"{json_file} has no 'images': {_COCO_FORMAT}")
    for key in _REQUIRED_KEYS:
        if key in coco and not isinstance(coco[key], list):
            raise DatasetError(f"{json_file}: {key!r} is {_kind(coco[key])}, not a list: {_COCO_FORMAT}")
    if not coco.get("categories"):
        raise DatasetError(
            f"{json_file} has no 'categories': a COCO-format json names its classes in "
            '"categories": [{"id": 1, "name": "cat"}, ...]'
        )


def _check_objects(json_file: str, key: str, items: List) -> None:
    """The items of the list ``key`` are objects with its required keys, each value as :data:`_VALUES` allows."""
    noun = _NOUNS[key]
    not_objects = [f"{key}[{index}] is {_shown(item)}"
                   for index, item in enumerate(items) if not isinstance(item, dict)]
    _raise_if_any(json_file, noun, "that is not an object", not_objects)
    required = _REQUIRED_KEYS[key]
    lacking = [
        f"{_where(key, index, item)} has no {', '.join(repr(k) for k in required if k not in item)}"
        for index, item in enumerate(items)
        if not item.keys() >= set(required)
    ]
    _raise_if_any(json_file, noun, f"without one of the required keys {', '.join(map(repr, required))}", lacking)
    for field, (valid, expected) in _VALUES[key].items():
        wrong = [
            f"{_where(key, index, item, field)} has {field} {_shown(item[field])}"
            for index, item in enumerate(items)
            if field in item and not valid(item[field])
        ]
        _raise_if_any(json_file, noun, f"whose {field} is not {expected}", wrong)
    id_kinds = {isinstance(item["id"], str): index for index, item in enumerate(items)}
    if len(id_kinds) == 2:
        examples = " and ".join(f"{_where(key, index, items[index])}" for index in sorted(id_kinds.values()))
        raise DatasetError(f"{json_file}: {key!r} mixes integer and string ids ({examples}): use one kind")


def _where(key: str, index: int, item: Dict, field: str = "") -> str:
    """
    'annotations[3]', followed by the valid values that identify the item other than
    ``field``'s: 'annotations[3] (id 7, image_id 2)', 'images[0] (id 1, file_name "1.jpg")'.
    """
    shown = [f"{k} {_shown(item[k])}" for k, valid in _IDENTIFYING if k != field and valid(item.get(k))]
    return f"{key}[{index}]" + (f" ({', '.join(shown)})" if shown else "")


def _check_references(
    json_file: str, annotations: List[Dict], field: str, noun: str, ids: List, describe: Callable, problem: str
) -> None:
    """
    Each annotation's ``field`` is one of ``ids`` (those of the ``noun`` list), else an error
    listing ``describe(index, annotation)`` of the others.
    """
    known = set(ids)
    # A value of the other kind ("1" for 1, or 1 for "1") is named as such.
    as_text = {str(id_): id_ for id_ in ids}
    wrong = []
    for index, anno in enumerate(annotations):
        value = anno[field]
        if value in known:
            continue
        other = as_text.get(str(value))
        kinds = ("an integer", "a string") if isinstance(value, int) else ("a string", "an integer")
        hint = f" ({kinds[0]}, but {noun} {_shown(other)}'s id is {kinds[1]})" if other is not None else ""
        wrong.append(f"{describe(index, anno)} has {field} {_shown(value)}{hint}")
    _raise_if_any(json_file, "annotation", problem, wrong)


def _check_unique_ids(json_file: str, kind: str, items: List[Dict], describe: Callable) -> None:
    """Raise if an id is used twice, listing each such id with ``describe`` of the items having it."""
    counts = Counter(item["id"] for item in items)
    if len(counts) == len(items):
        return
    by_id = defaultdict(list)
    for item in items:
        if counts[item["id"]] > 1:
            by_id[item["id"]].append(describe(item))
    repeated = [f"{_shown(id_)} ({', '.join(map(str, described))})" for id_, described in by_id.items()]
    _raise_if_any(json_file, f"{kind} id", "used more than once (ids must be unique)", repeated)


def _raise_if_any(json_file: str, noun: str, problem: str, listed: List[str]) -> None:
    """:class:`DatasetError`: '<json_file>: <count> <noun>s <problem>: <the first listed>; ...', if ``listed``."""
    if listed:
        shown = "; ".join(listed[:_SHOWN]) + ("; ..." if len(listed) > _SHOWN else "")
        raise DatasetError(f"{json_file}: {_count(len(listed), noun)} {problem}: {shown}")


def _shown(value: Any) -> str:
    """``value`` as JSON, cut to :data:`_SHOWN_CHARACTERS` characters."""
    text = json.dumps(value)
    return text if len(text) <= _SHOWN_CHARACTERS else text[:_SHOWN_CHARACTERS] + "..."


def _kind(value: Any) -> str:
    """The JSON type of ``value``, with its article: 'an object', 'null', ..."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


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
    Raise :class:`DatasetError` saying why if no annotation of the training set ``dataset_dicts`` is a
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
    raise DatasetError(
        f"The training dataset has no box to train on: {_count(len(detection), 'image')}, {why}. "
        f"Its images are in {_first(folders)}. A dataset without boxes can be evaluated on, not trained on"
    )


def _is_crowd(anno: Dict) -> bool:
    """Whether training leaves the annotation out, as detectron2's ``DatasetMapper`` does."""
    return anno.get("iscrowd", 0) != 0


def check_image_files(dataset_dicts: List[Dict], dataset_name: str) -> None:
    """
    Raise ``FileNotFoundError`` with the count and the first paths of images that do not exist.
    Every file is looked up, by :data:`FILE_CHECK_THREADS` threads at once.
    """
    file_names = [record["file_name"] for record in dataset_dicts]
    tasks = [file_names[start : start + _FILES_PER_TASK] for start in range(0, len(file_names), _FILES_PER_TASK)]
    with ThreadPoolExecutor(max(1, min(FILE_CHECK_THREADS, len(tasks)))) as pool:
        missing = [path for paths in pool.map(_not_files, tasks) for path in paths]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(dataset_dicts)} images of dataset {dataset_name!r} do not exist: "
            + _first(missing)
        )


def _not_files(paths: List[str]) -> List[str]:
    """Those of ``paths`` that are not files, in their order."""
    return [path for path in paths if not os.path.isfile(path)]


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
                raise DatasetError(f"Annotation {anno.get('id')} of dataset {dataset_name!r} has bbox_mode "
                                 f"{anno['bbox_mode']}; expected XYWH_ABS or XYXY_ABS")
            xywh = anno["bbox_mode"] == BoxMode.XYWH_ABS
            x1, y1, a, b = (float(v) for v in anno["bbox"])
            box = [x1, y1, x1 + a, y1 + b] if xywh else [x1, y1, a, b]
            if 0 <= box[0] < box[2] <= record["width"] and 0 <= box[1] < box[3] <= record["height"]:
                kept.append(anno)  # inside its image, with an area
                continue
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
    """'1 image', '2 images', '2 categories' ('2 boxes' with ``plural``)."""
    plural = plural or (singular[:-1] + "ies" if singular.endswith("y") else singular + "s")
    return f"{n} {singular if n == 1 else plural}"


def _first(ids: List) -> str:
    return ", ".join(map(str, ids[:_SHOWN])) + (", ..." if len(ids) > _SHOWN else "")
