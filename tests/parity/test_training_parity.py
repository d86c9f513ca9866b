"""
Training-step parity with the original YOLOS: annotated images in, losses and gradients out.

A batch of two annotated fixture images goes through detectron2's ``DatasetMapper`` with the
augmentation choices ``record_original.py`` fixed for the original (a horizontal flip and the
capped resize for one image; the resize to 400, a crop and the last resize for the other), then
through ``YOLOS`` in training mode with random weights, for YOLOS-Ti and YOLOS-S (cut to 2
blocks). Everything must be what the original code gave: the same image and padded batch sizes,
target labels and Hungarian matching; target boxes (normalised cx, cy, w, h) within 1e-6; the
weighted losses within 1e-5; the gradients of their sum within 1e-4 (the recorded entries and
the L2 norm of each parameter's gradient, and the norm over all of them).
"""
import os
import types

import pytest
import torch
from detectron2.config import instantiate
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from detectron2.utils.events import EventStorage
from PIL import Image

from record_original import FIXTURES, REPO, load_recorded, recorded_weights
from yolos_d2.config import load_config
from yolos_d2.data.transforms import DETRResizeShortestEdge

LOSS_ATOL = 1e-5
GRAD_ATOL = 1e-4


def dataset_dict(sample: dict, image_id: int) -> dict:
    """A recorded sample as a detectron2 dataset dict (COCO boxes, contiguous class ids)."""
    path = os.path.join(FIXTURES, "images", sample["image"])
    with Image.open(path) as image:
        width, height = image.size
    annotations = [
        {"bbox": ann["bbox"], "bbox_mode": BoxMode.XYWH_ABS, "category_id": ann["category_id"], "iscrowd": 0}
        for ann in sample["annotations"]
    ]
    return {"file_name": path, "height": height, "width": width, "image_id": image_id, "annotations": annotations}


def fixed_augmentations(sample: dict, width: int, max_size: int, size_multiple: int) -> list:
    """
    The recorded random choices of the DETR training augmentation, fixed: an optional flip of an
    image ``width`` pixels wide, an optional resize then crop (region: top, left, height, width),
    and the resize of the shorter side to ``sample["scale"]``, the longer at most ``max_size``.
    """
    augmentations = [T.HFlipTransform(width)] if sample["hflip"] else []
    if sample["crop"] is not None:
        top, left, height, width = sample["crop"]["region"]
        augmentations += [
            DETRResizeShortestEdge(sample["crop"]["pre_resize"], size_multiple=size_multiple),
            T.CropTransform(left, top, width, height),
        ]
    return augmentations + [DETRResizeShortestEdge(sample["scale"], max_size, size_multiple)]


@pytest.fixture(scope="module", params=["yolos_ti", "yolos_s"])
def step(request):
    """The recorded numbers of one setup, and yolos_d2's for one training step on the same batch."""
    recorded = load_recorded(f"training_{request.param}")
    cfg = load_config(os.path.join(REPO, recorded["config"]), recorded["overrides"])
    model = instantiate(cfg.model)
    model.load_state_dict(recorded_weights(recorded))
    model.train()

    train_mapper = cfg.dataloader.train.mapper
    batch = []
    for i, sample in enumerate(recorded["samples"]):
        record = dataset_dict(sample, i)
        augmentations = fixed_augmentations(
            sample, record["width"], recorded["max_size"], train_mapper.augmentations.size_multiple
        )
        mapper = DatasetMapper(is_train=True, augmentations=augmentations, image_format=train_mapper.image_format)
        batch.append(mapper(record))

    seen = types.SimpleNamespace()
    model.detector.register_forward_pre_hook(lambda module, args: setattr(seen, "input_size", args[0].shape[-2:]))
    model.criterion.register_forward_pre_hook(lambda module, args: setattr(seen, "targets", args[1]))
    model.criterion.matcher.register_forward_hook(lambda module, args, output: setattr(seen, "matched", output))
    with EventStorage() as storage:
        losses = model(batch)
    sum(losses.values()).backward()
    return types.SimpleNamespace(
        recorded=recorded,
        image_sizes=[list(x["image"].shape[-2:]) for x in batch],
        losses={name: loss.item() for name, loss in losses.items()},
        class_error=storage.latest()["class_error"][0],
        grads={name: p.grad for name, p in model.named_parameters()},
        **vars(seen),
    )


def test_input_sizes_are_the_originals(step):
    assert step.image_sizes == step.recorded["image_input_sizes"]
    assert list(step.input_size) == step.recorded["input_size"]


def test_targets_are_the_originals(step):
    assert len(step.targets) == len(step.recorded["targets"])
    for ours, expected in zip(step.targets, step.recorded["targets"]):
        assert torch.equal(ours["labels"], expected["labels"])
        torch.testing.assert_close(ours["boxes"], expected["boxes"], atol=1e-6, rtol=0)


def test_matching_is_the_originals(step):
    matched = [(tokens.tolist(), boxes.tolist()) for tokens, boxes in step.matched]
    assert matched == [(tokens.tolist(), boxes.tolist()) for tokens, boxes in step.recorded["matched"]]


def test_losses_are_the_originals(step):
    assert step.losses.keys() == step.recorded["losses"].keys()
    for name, expected in step.recorded["losses"].items():
        assert step.losses[name] == pytest.approx(expected, abs=LOSS_ATOL, rel=0), name
    assert step.class_error == pytest.approx(step.recorded["class_error"], abs=1e-4)


def test_gradients_are_the_originals(step):
    assert step.grads.keys() == step.recorded["grads"].keys()
    for name, expected in step.recorded["grads"].items():
        grad = step.grads[name]
        sampled = grad.flatten()[expected["index"]]
        torch.testing.assert_close(sampled, expected["values"], atol=GRAD_ATOL, rtol=0, msg=name)
        assert grad.double().norm().item() == pytest.approx(expected["norm"], abs=GRAD_ATOL), name
    total = torch.cat([g.double().flatten() for g in step.grads.values()]).norm().item()
    assert total == pytest.approx(step.recorded["grad_norm"], abs=GRAD_ATOL)
