"""
A small synthetic COCO-format detection dataset that lets the whole pipeline train on a CPU.

Images are RGB squares over a textured background (a random base colour with blocky and
per-pixel noise) holding 1-3 objects that barely overlap. Each class has its own shape and
colour band: reddish rectangles, greenish ellipses and bluish triangles, with jittered colours.

The files are generated on first use into a cache directory, deterministically from a seed, and
regenerated only when a parameter changes (each parameter set has its own folder).
:func:`register_synthetic_shapes` registers the splits with detectron2 under fixed names.
"""
import dataclasses
import hashlib
import json
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from ..utils.file_io import write_atomic
from .validation import load_checked_coco_json

__all__ = [
    "SYNTHETIC_SHAPES_CLASSES",
    "SyntheticShapesSpec",
    "generate_synthetic_shapes",
    "register_synthetic_shapes",
    "split_files",
]

SYNTHETIC_SHAPES_CLASSES = ("rectangle", "ellipse", "triangle")
# Colour band of each class: the dominant channel is high, the others low, before jitter.
_CLASS_CHANNEL = {"rectangle": 0, "ellipse": 1, "triangle": 2}
# Bump when the drawing code changes, so cached files are regenerated.
_GENERATOR_VERSION = 1
# Generation logs its progress this many times.
_PROGRESS_LINES = 10

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SyntheticShapesSpec:
    """Parameters of one split; every field takes part in the cache key."""

    num_images: int
    seed: int
    image_size: int = 128
    max_objects: int = 3
    min_side: float = 0.2
    max_side: float = 0.5
    max_overlap: float = 0.1

    def cache_key(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "version": _GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


# The registered splits: the quick-start's training and validation sets.
SYNTHETIC_SHAPES_SPLITS = {
    "synthetic_shapes_train": SyntheticShapesSpec(num_images=4000, seed=0),
    "synthetic_shapes_val": SyntheticShapesSpec(num_images=300, seed=1),
}


def default_cache_dir() -> str:
    """``$YOLOS_D2_CACHE``, else ``~/.cache/yolos_d2``."""
    return os.environ.get("YOLOS_D2_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "yolos_d2"))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(40, 215, size=3)
    blocks = rng.normal(0, 18, size=(size // 16, size // 16, 3)).repeat(16, 0).repeat(16, 1)
    pixels = rng.normal(0, 10, size=(size, size, 3))
    return base + blocks + pixels


def _object_colour(rng: np.random.Generator, class_name: str) -> np.ndarray:
    colour = rng.uniform(0, 90, size=3)
    colour[_CLASS_CHANNEL[class_name]] = rng.uniform(170, 255)
    return colour


def _shape_mask(class_name: str, box: Tuple[int, int, int, int], size: int) -> np.ndarray:
    """(size, size) bool mask of a shape filling ``box`` = (x0, y0, w, h) in pixels."""
    x0, y0, w, h = box
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    u, v = (xs - x0) / w, (ys - y0) / h  # coordinates inside the box, in [0, 1]
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    if class_name == "rectangle":
        return inside
    if class_name == "ellipse":
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    # An upright isosceles triangle: apex at the top centre, base along the bottom edge.
    return inside & (np.abs(u - 0.5) <= v / 2)


def _iou(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _draw_image(rng: np.random.Generator, spec: SyntheticShapesSpec) -> Tuple[np.ndarray, List[Dict]]:
    size = spec.image_size
    image = _background(rng, size)
    objects = []
    for _ in range(rng.integers(1, spec.max_objects + 1)):
        for _attempt in range(20):
            w, h = (rng.uniform(spec.min_side, spec.max_side, size=2) * size).round().astype(int)
            box = (int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1)), int(w), int(h))
            if all(_iou(box, other["bbox"]) <= spec.max_overlap for other in objects):
                break
        else:
            continue
        class_id = int(rng.integers(len(SYNTHETIC_SHAPES_CLASSES)))
        class_name = SYNTHETIC_SHAPES_CLASSES[class_id]
        mask = _shape_mask(class_name, box, size)
        image[mask] = _object_colour(rng, class_name) + rng.normal(0, 6, size=(int(mask.sum()), 3))
        objects.append({"bbox": box, "category_id": class_id + 1})
    return np.clip(image, 0, 255).astype(np.uint8), objects


def split_files(spec: SyntheticShapesSpec, root: str) -> Tuple[str, str]:
    """(annotation file, image folder) of the split described by ``spec`` under ``root``."""
    folder = os.path.join(root, f"synthetic_shapes_{spec.cache_key()}")
    return os.path.join(folder, "annotations.json"), os.path.join(folder, "images")


def generate_synthetic_shapes(spec: SyntheticShapesSpec, root: str) -> str:
    """
    Write the split described by ``spec`` under ``root`` unless it is already there.

    Returns:
        path of the COCO-format annotation file (see :func:`split_files`). Object boxes are
        XYWH in pixels, category ids 1..3 in the order of ``SYNTHETIC_SHAPES_CLASSES``.
    """
    json_file, image_dir = split_files(spec, root)
    if os.path.isfile(json_file):
        return json_file
    logger.info(f"Generating {spec.num_images} synthetic images into {image_dir} ...")
    os.makedirs(image_dir, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    images, annotations = [], []
    progress_step = max(1, spec.num_images // _PROGRESS_LINES)
    for image_id in range(1, spec.num_images + 1):
        pixels, objects = _draw_image(rng, spec)
        file_name = f"{image_id:06d}.png"
        Image.fromarray(pixels).save(os.path.join(image_dir, file_name))
        images.append({"id": image_id, "file_name": file_name, "height": spec.image_size, "width": spec.image_size})
        for obj in objects:
            annotations.append(
                {**obj, "id": len(annotations) + 1, "image_id": image_id, "area": obj["bbox"][2] * obj["bbox"][3], "iscrowd": 0}
            )
        if image_id % progress_step == 0:
            percent = f"{image_id / spec.num_images:.0%}"
            logger.info(f"Generated {image_id} of {spec.num_images} synthetic images ({percent})")
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(SYNTHETIC_SHAPES_CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    # Write the annotation file last and atomically: its presence marks a complete split.
    write_atomic(json_file, lambda f: f.write(json.dumps(coco).encode()))
    return json_file


def register_synthetic_shapes(root: Optional[str] = None) -> None:
    """
    Register ``synthetic_shapes_train`` (4,000 images) and ``synthetic_shapes_val`` (300) with
    detectron2; a split is generated under ``root`` (default :func:`default_cache_dir`) the first
    time its dataset dicts are requested. Registering again is a no-op.
    """
    root = root or default_cache_dir()
    for name, spec in SYNTHETIC_SHAPES_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        json_file, image_dir = split_files(spec, root)

        def load(spec=spec, name=name, image_dir=image_dir):
            return load_checked_coco_json(generate_synthetic_shapes(spec, root), image_dir, name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(
            json_file=json_file,
            image_root=image_dir,
            evaluator_type="coco",
            thing_classes=list(SYNTHETIC_SHAPES_CLASSES),
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(SYNTHETIC_SHAPES_CLASSES))},
        )
