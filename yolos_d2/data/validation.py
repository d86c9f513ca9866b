"""
Checks of a COCO-format detection dataset, run when its dataset dicts are loaded (before training
or evaluation starts):

- an annotation file that is not valid JSON: an error naming the file, line and column;
- annotations whose category id is not among the file's categories: an error naming them, their
  images and the ids;
- image files that do not exist: an error with their count and the first few paths;
- boxes without width or height, or wholly outside their image: dropped; boxes that extend past
  their image: clipped to it; both logged with their count and first annotation ids.

Images that exist but cannot be decoded are found only when read: the training loader skips
them (see :mod:`yolos_d2.data.build`).
"""
import json
import logging
import os
from typing import Dict, List, Optional

from detectron2.data.datasets import load_coco_json

__all__ = ["check_image_files", "clip_boxes_to_images", "load_checked_coco_json"]

logger = logging.getLogger(__name__)

# How many paths or ids a message lists.
_SHOWN = 5


def load_checked_coco_json(json_file: str, image_root: str, dataset_name: str) -> List[Dict]:
    """
    detectron2's ``load_coco_json`` (which also sets the dataset's ``thing_classes``), with the
    checks of this module. Annotations keep their ``id`` from the json file.
    """
    try:
        dataset_dicts = load_coco_json(json_file, image_root, dataset_name, extra_annotation_keys=["id"])
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_file} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except KeyError:
        # detectron2 names an unknown category id but not the annotations that have it.
        message = _unknown_categories_message(json_file)
        if message is None:
            raise
        raise ValueError(message) from None
    check_image_files(dataset_dicts, dataset_name)
    clip_boxes_to_images(dataset_dicts, dataset_name)
    return dataset_dicts


def _unknown_categories_message(json_file: str) -> Optional[str]:
    """The error for the annotations of ``json_file`` whose category is not in it; None if none is."""
    with open(json_file) as f:
        coco = json.load(f)
    known = {c["id"] for c in coco.get("categories", []) if "id" in c}
    unknown = [a for a in coco.get("annotations", []) if a.get("category_id") not in known]
    if not unknown:
        return None
    listed = "; ".join(
        f"annotation {a.get('id')} (image {a.get('image_id')}) has category_id {a.get('category_id')}"
        for a in unknown[:_SHOWN]
    )
    return (
        f"{json_file}: {len(unknown)} annotations have a category_id that is not in its 'categories' "
        f"(ids {', '.join(map(str, sorted(known)))}): {listed}{'; ...' if len(unknown) > _SHOWN else ''}"
    )


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
    In place: clip each annotation's box (XYWH in pixels, as ``load_coco_json`` gives) to its
    image's ``width`` x ``height``, and drop annotations left without area: zero or negative width
    or height, or wholly outside the image. Logs how many were clipped and dropped.

    Raises:
        ValueError naming the annotation and its image if a box is not four numbers.
    """
    clipped, dropped, total = [], [], 0
    for record in dataset_dicts:
        kept = []
        for anno in record["annotations"]:
            bbox = anno.get("bbox")
            if bbox is None or len(bbox) != 4:
                raise ValueError(
                    f"Annotation {anno.get('id')} of image {record['image_id']} ({record['file_name']}) of "
                    f"dataset {dataset_name!r} has bbox {bbox!r}; expected [x, y, width, height]"
                )
            x, y, w, h = (float(v) for v in bbox)
            x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, record["width"]), min(y + h, record["height"])
            if not (x2 > x1 and y2 > y1):  # also false for NaN
                dropped.append(anno.get("id"))
                continue
            if (x1, y1, x2, y2) != (x, y, x + w, y + h):
                anno["bbox"] = [x1, y1, x2 - x1, y2 - y1]
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


def _first(ids: List) -> str:
    return ", ".join(map(str, ids[:_SHOWN])) + (", ..." if len(ids) > _SHOWN else "")
