"""
What each ``[DET]`` token predicts over a dataset, as in the YOLOS paper's analysis: every token's
prediction on every image, whatever its score, and its summaries (the classes each token
predicts, the dataset's classes, COCO's size category of each box).
"""
import dataclasses
from typing import Dict, List, Sequence

import numpy as np
from torchvision.ops import box_convert
from tqdm import tqdm

from .predictor import YOLOSPredictor

__all__ = [
    "COCO_AREA_THRESHOLDS",
    "TokenPredictions",
    "class_distribution",
    "collect_token_predictions",
    "gt_class_counts",
    "size_categories",
]

# COCO's object sizes: a box area (in the image's pixels) below 32^2 is small, from 96^2 large.
COCO_AREA_THRESHOLDS = (32**2, 96**2)


@dataclasses.dataclass
class TokenPredictions:
    """Every ``[DET]`` token's prediction on every image: M = images x K rows, image by image."""

    image_ids: List  # (M,) the dataset's image ids (int for COCO, str for VOC)
    tokens: np.ndarray  # (M,) token index in 0..K-1
    boxes_cxcywh: np.ndarray  # (M, 4) cx, cy, w, h normalised by the image size, in [0, 1]
    boxes_xyxy: np.ndarray  # (M, 4) x0, y0, x1, y1 in the image's pixels
    classes: np.ndarray  # (M,) predicted class id (best class other than no-object)
    scores: np.ndarray  # (M,) its probability

    def to_json(self) -> List[Dict]:
        """One dict per row: "image_id", "token", "box_cxcywh", "box_xyxy", "class_id", "score"."""
        return [
            {
                "image_id": image_id,
                "token": int(token),
                "box_cxcywh": [round(float(v), 6) for v in cxcywh],
                "box_xyxy": [round(float(v), 2) for v in xyxy],
                "class_id": int(class_id),
                "score": round(float(score), 6),
            }
            for image_id, token, cxcywh, xyxy, class_id, score in zip(
                self.image_ids, self.tokens, self.boxes_cxcywh, self.boxes_xyxy, self.classes, self.scores
            )
        ]


def collect_token_predictions(
    predictor: YOLOSPredictor, dataset_dicts: Sequence[Dict], batch_size: int = 1
) -> TokenPredictions:
    """
    Run ``predictor`` (keeping every token's detection, as by default) on the image of each of
    ``dataset_dicts`` (at least one), ``batch_size`` images per list, and keep every token's
    prediction. Boxes are those of the model's ``Instances``: clipped if ``model.clip_boxes``.
    """
    image_ids, tokens, boxes_cxcywh, boxes_xyxy, classes, scores = [], [], [], [], [], []
    with tqdm(total=len(dataset_dicts), unit="image") as progress:
        for start in range(0, len(dataset_dicts), batch_size):
            batch = dataset_dicts[start : start + batch_size]
            for dataset_dict, instances in zip(batch, predictor([d["file_name"] for d in batch])):
                height, width = instances.image_size
                xyxy = instances.pred_boxes.tensor
                image_ids += [dataset_dict["image_id"]] * len(instances)
                tokens.append(instances.det_tokens.numpy())
                normalised = xyxy / xyxy.new_tensor([width, height, width, height])
                boxes_cxcywh.append(box_convert(normalised, "xyxy", "cxcywh").numpy())
                boxes_xyxy.append(xyxy.numpy())
                classes.append(instances.pred_classes.numpy())
                scores.append(instances.scores.numpy())
            progress.update(len(batch))
    return TokenPredictions(image_ids, *map(np.concatenate, (tokens, boxes_cxcywh, boxes_xyxy, classes, scores)))


def class_distribution(tokens: np.ndarray, classes: np.ndarray, num_tokens: int, num_classes: int) -> np.ndarray:
    """
    Args:
        tokens, classes: (M,) token index and predicted class of each prediction.

    Returns:
        (num_tokens, num_classes) float: row t is the share of token t's predictions in each
        class (a zero row for a token without predictions).
    """
    counts = np.zeros((num_tokens, num_classes))
    np.add.at(counts, (tokens, classes), 1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def gt_class_counts(dataset_dicts: Sequence[Dict], num_classes: int) -> np.ndarray:
    """(num_classes,) int: the number of annotations of each class (contiguous ids) in the dataset."""
    classes = [ann["category_id"] for d in dataset_dicts for ann in d.get("annotations", [])]
    return np.bincount(np.asarray(classes, dtype=np.int64), minlength=num_classes)


def size_categories(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(M, 4) boxes in pixels -> (M,) COCO's size category of each: 0 small, 1 medium, 2 large."""
    areas = (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]) * (boxes_xyxy[:, 3] - boxes_xyxy[:, 1])
    return np.digitize(areas, COCO_AREA_THRESHOLDS)
