"""
Pascal VOC detection annotations, loaded as detectron2's ``load_voc_instances`` loads them but
checked: a file or value that cannot be read is an error naming the file and what is wrong, and
the dataset dicts then go through :func:`yolos_d2.data.validation.check_dataset_dicts`.
"""
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Dict, List, Sequence
from xml.parsers.expat import ErrorString

from detectron2.structures import BoxMode

from .validation import DatasetError, check_dataset_dicts

__all__ = ["load_checked_voc_instances"]

_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


def load_checked_voc_instances(dirname: str, split: str, class_names: Sequence[str], dataset_name: str) -> List[Dict]:
    """
    The dataset dicts of the VOC-format folder ``dirname`` (``Annotations/``, ``JPEGImages/``,
    ``ImageSets/Main/<split>.txt``), as detectron2's ``load_voc_instances`` gives them: image
    ``JPEGImages/<id>.jpg`` with ``image_id`` its file id, one annotation per ``<object>`` with
    ``category_id`` its class's index in ``class_names`` and ``bbox`` (XYXY_ABS, in pixels:
    VOC's 1-based ``xmin`` and ``ymin`` minus 1), difficult objects included.

    Raises:
        DatasetError (a ValueError) naming the file: a split listing an image twice; XML that
        is not well-formed (with its line and column); a missing element; a size that is not a
        positive whole number; a box value that is not a finite number; a class not in
        ``class_names``.
    """
    split_file = os.path.join(dirname, "ImageSets", "Main", split + ".txt")
    with open(split_file) as f:
        file_ids = f.read().split()
    repeated = [file_id for file_id, count in Counter(file_ids).items() if count > 1]
    if repeated:
        listed = ", ".join(repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        noun = "image" if len(repeated) == 1 else "images"
        raise DatasetError(f"{split_file} lists {len(repeated)} {noun} more than once: {listed}")
    dataset_dicts = [_load_annotation_file(dirname, file_id, list(class_names)) for file_id in file_ids]
    check_dataset_dicts(dataset_dicts, dataset_name)
    return dataset_dicts


def _load_annotation_file(dirname: str, file_id: str, class_names: List[str]) -> Dict:
    """The dataset dict of ``Annotations/<file_id>.xml``."""
    xml_file = os.path.join(dirname, "Annotations", file_id + ".xml")
    try:
        root = ET.parse(xml_file).getroot()
    except ET.ParseError as e:
        line, column = e.position
        reason = ErrorString(e.code)
        raise DatasetError(f"{xml_file} is not valid XML: {reason} at line {line}, column {column}") from None
    record = {
        "file_name": os.path.join(dirname, "JPEGImages", file_id + ".jpg"),
        "image_id": file_id,
        "height": _image_side(root, "height", xml_file),
        "width": _image_side(root, "width", xml_file),
    }
    annotations = []
    for index, obj in enumerate(root.findall("object"), start=1):
        where = f"{xml_file}: object {index}"
        name = _text(obj, "name", f"{where} has no <name>")
        if name not in class_names:
            raise DatasetError(
                f"{where} has class {name!r}, which is not one of the dataset's {len(class_names)} classes: "
                + ", ".join(class_names)
            )
        box = [_box_value(obj, key, where) for key in _BOX_KEYS]
        box[0] -= 1.0
        box[1] -= 1.0
        annotations.append({"category_id": class_names.index(name), "bbox": box, "bbox_mode": BoxMode.XYXY_ABS})
    record["annotations"] = annotations
    return record


def _text(element: ET.Element, path: str, missing: str) -> str:
    """The stripped text of ``element``'s child at ``path``; ``DatasetError(missing)`` if there is none."""
    child = element.find(path)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(missing)
    return child.text.strip()


def _image_side(root: ET.Element, key: str, xml_file: str) -> int:
    text = _text(root, f"size/{key}", f"{xml_file}: no <size>/<{key}>")
    # ASCII digits only: str.isdigit() is also true of "²", which int() refuses.
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise DatasetError(f"{xml_file}: <size>/<{key}> is {text!r}; expected a positive whole number of pixels")
    return int(text)


def _box_value(obj: ET.Element, key: str, where: str) -> float:
    text = _text(obj, f"bndbox/{key}", f"{where} has no <bndbox>/<{key}>")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DatasetError(f"{where} has <bndbox>/<{key}> {text!r}; expected a finite number")
    return value
