"""The YOLOS meta-architecture on detectron2's batch format."""
import pytest
import torch
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from conftest import build_model

SMALL = ["model.detector.backbone.depth=2"]


def _batch():
    torch.manual_seed(0)
    return [
        {"image": torch.randint(0, 256, (3, 120, 200), dtype=torch.uint8), "height": 240, "width": 400},
        {"image": torch.randint(0, 256, (3, 150, 90), dtype=torch.uint8), "height": 150, "width": 90},
    ]


def test_registered_in_detectron2():
    import yolos_d2.modeling

    assert META_ARCH_REGISTRY.get("YOLOS") is yolos_d2.modeling.YOLOS


@pytest.mark.parametrize("variant", ["yolos_ti", "yolos_s"])
def test_inference_returns_one_detection_per_token_inside_the_image_when_clipping(variant):
    model = build_model(variant, [*SMALL, "model.clip_boxes=True"])
    batch = _batch()
    outputs = model(batch)
    assert len(outputs) == 2
    for inputs, output in zip(batch, outputs):
        instances = output["instances"]
        height, width = inputs["height"], inputs["width"]
        assert instances.image_size == (height, width)
        assert len(instances) == 100
        boxes = instances.pred_boxes.tensor
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
        assert ((instances.pred_classes >= 0) & (instances.pred_classes < 80)).all()


@pytest.mark.parametrize("clip", [False, True])
def test_inference_matches_detector_with_postprocessing(clip):
    # The paper configs keep boxes as predicted (clip_boxes=False), as the original's PostProcess.
    overrides = SMALL if not clip else [*SMALL, "model.clip_boxes=True"]
    model = build_model("yolos_ti", overrides)
    with torch.no_grad():  # spread the boxes, so that some reach past the image
        model.detector.bbox_embed.layers[-1].weight.mul_(30)
    torch.manual_seed(1)
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    instances = model([{"image": image, "height": 128, "width": 192}])[0]["instances"]
    normalised = (image.float() - model.pixel_mean) / model.pixel_std
    with torch.no_grad():
        raw = model.detector(normalised[None])
    probs = raw["pred_logits"][0].softmax(-1)[:, :-1]
    assert torch.allclose(instances.scores, probs.max(-1).values)
    cx, cy, w, h = raw["pred_boxes"][0].unbind(-1)
    expected = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * torch.tensor([192, 128, 192, 128])
    size = torch.tensor([192, 128, 192, 128.0])
    outside = (expected < 0) | (expected > size)
    assert outside.any()  # random weights put some boxes past the image: the two settings differ here
    if clip:
        expected = torch.min(expected.clamp(min=0), size)
    assert torch.allclose(instances.pred_boxes.tensor, expected, atol=1e-4)


def test_images_are_padded_to_a_multiple_of_16():
    model = build_model("yolos_ti", SMALL)
    images = model.preprocess_image(_batch())
    assert images.tensor.shape[-2:] == (160, 208)
    assert images.image_sizes == [(120, 200), (150, 90)]


def test_bgr_input_format_gives_the_same_detections():
    rgb_model = build_model("yolos_ti", SMALL)
    bgr_model = build_model("yolos_ti", [*SMALL, "model.input_format=BGR"])
    batch = _batch()
    bgr_batch = [{**x, "image": x["image"].flip(0)} for x in batch]
    for a, b in zip(rgb_model(batch), bgr_model(bgr_batch)):
        assert torch.allclose(a["instances"].scores, b["instances"].scores)


def _training_batch():
    """Two small images: three boxes in the first, none in the second."""
    torch.manual_seed(0)
    with_boxes = Instances((64, 96))
    with_boxes.gt_boxes = Boxes(
        torch.tensor([[8.0, 4.0, 40.0, 36.0], [50.0, 20.0, 90.0, 60.0], [0.0, 0.0, 96.0, 64.0]])
    )
    with_boxes.gt_classes = torch.tensor([3, 17, 0])
    without_boxes = Instances((48, 80))
    without_boxes.gt_boxes = Boxes(torch.zeros(0, 4))
    without_boxes.gt_classes = torch.zeros(0, dtype=torch.int64)
    return [
        {"image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8), "instances": with_boxes},
        {"image": torch.randint(0, 256, (3, 48, 80), dtype=torch.uint8), "instances": without_boxes},
    ]


def test_targets_are_normalised_cxcywh_of_the_unpadded_image():
    model = build_model("yolos_ti", SMALL)
    batch = _training_batch()
    images = model.preprocess_image(batch)
    targets = model.prepare_targets([x["instances"] for x in batch], images.image_sizes)
    assert targets[0]["labels"].tolist() == [3, 17, 0]
    # Image (h, w) = (64, 96); cx, cy, w, h in pixels over (96, 64, 96, 64).
    expected = torch.tensor(
        [[24 / 96, 20 / 64, 32 / 96, 32 / 64], [70 / 96, 40 / 64, 40 / 96, 40 / 64], [0.5, 0.5, 1.0, 1.0]]
    )
    assert torch.allclose(targets[0]["boxes"], expected)
    assert targets[1]["boxes"].shape == (0, 4) and targets[1]["labels"].shape == (0,)


def test_training_returns_the_three_losses_and_logs_class_error():
    model = build_model("yolos_ti", SMALL).train()
    with EventStorage() as storage:
        losses = model(_training_batch())
    assert set(losses) == {"loss_ce", "loss_bbox", "loss_giou"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    assert 0 <= storage.latest()["class_error"][0] <= 100
    sum(losses.values()).backward()
    head = model.detector.bbox_embed.layers[-1].weight
    assert head.grad is not None and torch.isfinite(head.grad).all() and head.grad.abs().sum() > 0
    assert model.detector.backbone.det_token.grad.abs().sum() > 0


def test_training_on_images_without_instances():
    model = build_model("yolos_ti", SMALL).train()
    batch = _training_batch()[1:]
    with EventStorage() as storage:
        losses = model(batch)
    assert torch.isfinite(losses["loss_ce"]) and losses["loss_bbox"] == 0 and losses["loss_giou"] == 0
    # class_error is undefined without matched tokens, so nothing is logged.
    assert "class_error" not in storage.latest()
    sum(losses.values()).backward()


def test_a_few_steps_on_one_batch_lower_the_loss():
    tiny = ["model.detector.backbone.depth=1", "model.detector.backbone.num_det_tokens=10"]
    model = build_model("yolos_ti", tiny).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    batch = _training_batch()
    history = []
    with EventStorage():
        for _ in range(30):
            losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            history.append({k: v.item() for k, v in losses.items()})
    first, last = history[0], history[-1]
    assert sum(last.values()) < 0.6 * sum(first.values()), history
    assert last["loss_bbox"] < 0.5 * first["loss_bbox"] and last["loss_giou"] < 0.5 * first["loss_giou"], history


def test_training_without_criterion_says_what_to_set():
    model = build_model("yolos_ti", [*SMALL, "model.criterion=null"]).train()
    with EventStorage(), pytest.raises(RuntimeError, match="set model.criterion"):
        model(_training_batch())


def test_criterion_follows_the_detector_class_count_and_adds_no_checkpoint_keys():
    model = build_model("yolos_ti", [*SMALL, "model.detector.num_classes=7"])
    assert model.criterion.num_classes == 7 and model.criterion.empty_weight.shape == (8,)
    assert not any(k.startswith("criterion.") for k in model.state_dict())


# 640x480 at 512: 682 wide by DETR's rule, floored to whole patches as the original: 672.
@pytest.mark.parametrize("variant, expected_size", [("yolos_ti", (512, 672)), ("yolos_s", (800, 1056))])
def test_config_test_mapper_feeds_the_model(tmp_path, variant, expected_size):
    from detectron2.config import instantiate
    from PIL import Image

    from conftest import config_path
    from yolos_d2.config import load_config

    path = tmp_path / "image.jpg"
    Image.fromarray(torch.randint(0, 256, (480, 640, 3), dtype=torch.uint8).numpy()).save(path)
    cfg = load_config(config_path(variant), SMALL)
    mapper = instantiate(cfg.dataloader.test.mapper)
    inputs = mapper({"file_name": str(path), "height": 480, "width": 640, "image_id": 1})
    assert tuple(inputs["image"].shape[-2:]) == expected_size
    instances = instantiate(cfg.model).eval()([inputs])[0]["instances"]
    assert instances.image_size == (480, 640)
