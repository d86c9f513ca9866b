"""detectron2's ``DatasetMapper`` for detection, reading images of any bit depth."""
import copy
from typing import Dict

import torch
from detectron2.data import DatasetMapper as _DetectronDatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .images import read_image

__all__ = ["DatasetMapper"]


class DatasetMapper(_DetectronDatasetMapper):
    """
    detectron2's ``DatasetMapper`` (same arguments) for detection datasets, reading images with
    :func:`yolos_d2.data.read_image`, which scales 16-bit images to 8 bits where detectron2's
    reader clips them. It maps the image and its boxes only: semantic segmentation files and
    precomputed proposals, which YOLOS does not use, are refused.

    Returns, per dataset dict, a copy with ``image``: (C, H, W) uint8 tensor, augmented; in
    training, ``instances`` (the non-crowd annotations, transformed) instead of ``annotations``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.proposal_topk is not None:
            raise ValueError(
                "yolos_d2.data.DatasetMapper does not load precomputed proposals: use load_proposals=False"
            )

    def __call__(self, dataset_dict: Dict) -> Dict:
        if "sem_seg_file_name" in dataset_dict:
            raise ValueError(
                f"yolos_d2.data.DatasetMapper maps detection datasets; {dataset_dict['file_name']} has a "
                "sem_seg_file_name: use detectron2's DatasetMapper for semantic segmentation"
            )
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        # A copy, not np.ascontiguousarray: numpy calls an array whose only negative stride is on
        # an axis of length 1 (a flipped 1-pixel-wide image) contiguous, and torch refuses it.
        dataset_dict["image"] = torch.from_numpy(image.transpose(2, 0, 1).copy())
        if not self.is_train:
            dataset_dict.pop("annotations", None)
        elif "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image.shape[:2])
        return dataset_dict
