"""The YOLOS meta-architecture on detectron2's batch format."""
import pytest
import torch
from detectron2.modeling import META_ARCH_REGISTRY

from _helpers import build_model

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
def test_inference_returns_one_detection_per_token_inside_the_image(variant):
    model = build_model(variant, SMALL)
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


def test_inference_matches_detector_with_postprocessing():
    model = build_model("yolos_ti", SMALL)
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    instances = model([{"image": image, "height": 128, "width": 192}])[0]["instances"]
    normalised = (image.float() - model.pixel_mean) / model.pixel_std
    with torch.no_grad():
        raw = model.detector(normalised[None])
    probs = raw["pred_logits"][0].softmax(-1)[:, :-1]
    assert torch.allclose(instances.scores, probs.max(-1).values)
    cx, cy, w, h = raw["pred_boxes"][0].unbind(-1)
    expected = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * torch.tensor([192, 128, 192, 128])
    expected = torch.min(expected.clamp(min=0), torch.tensor([192, 128, 192, 128.0]))
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


def test_training_is_not_available_yet():
    model = build_model("yolos_ti", SMALL).train()
    with pytest.raises(NotImplementedError, match="set criterion"):
        model(_batch())


@pytest.mark.parametrize("variant, expected_size", [("yolos_ti", (512, 683)), ("yolos_s", (800, 1067))])
def test_config_test_mapper_feeds_the_model(tmp_path, variant, expected_size):
    from detectron2.config import instantiate
    from PIL import Image

    from _helpers import load_config

    path = tmp_path / "image.jpg"
    Image.fromarray(torch.randint(0, 256, (480, 640, 3), dtype=torch.uint8).numpy()).save(path)
    cfg = load_config(variant, SMALL)
    mapper = instantiate(cfg.dataloader.test.mapper)
    inputs = mapper({"file_name": str(path), "height": 480, "width": 640, "image_id": 1})
    assert tuple(inputs["image"].shape[-2:]) == expected_size
    instances = instantiate(cfg.model).eval()([inputs])[0]["instances"]
    assert instances.image_size == (480, 640)
    assert (instances.pred_boxes.tensor[:, 2:] <= torch.tensor([640.0, 480.0])).all()
