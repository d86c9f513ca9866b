"""
YOLOSPredictor on lists of images: one forward per resized size, each image's detections those of
the image alone; the detections kept by score threshold, top-k and class-wise NMS; the three kinds
of input; the example of docs/inference.md.
"""
import os

import numpy as np
import pytest
import torch
from detectron2.config import instantiate
from PIL import Image

from _helpers import SMALL_PREDICTOR as SMALL, build_model, config_path, favour_class_0
from test_docs_commands import REPO, fenced_blocks
from yolos_d2.checkpoint import save_checkpoint_atomic
from yolos_d2.config import load_config
from yolos_d2.data import read_image
from yolos_d2.inference import YOLOSPredictor
from yolos_d2.modeling import select_detections

# (height, width) -> resized: 48x64, 51x70 and 60x80 all to 64x80 (one forward), 64x48 to 80x64,
# 30x100 to 32x96 (the longer side capped), 64x64 kept.
SIZES = [(48, 64), (64, 48), (51, 70), (30, 100), (60, 80), (64, 64)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """
    Random weights whose class head favours class 0 and whose boxes spread,
    so that tokens score from about 0.1 to 0.95 and some boxes of that class overlap (NMS has work to do).
    """
    model = build_model("yolos_ti", SMALL)
    favour_class_0(model)
    with torch.no_grad():
        model.detector.bbox_embed.layers[-1].weight.mul_(10)
    path = str(tmp_path_factory.mktemp("predictor") / "small.pth")
    save_checkpoint_atomic({"model": model.state_dict()}, path)
    return path


def make_predictor(weights, *overrides, **kwargs):
    """The small YOLOS-Ti with ``weights``, the ``overrides`` and the predictor's ``kwargs``, on the CPU."""
    overrides = [*SMALL, *overrides]
    return YOLOSPredictor(config_path("yolos_ti"), overrides=overrides, weights=weights, device="cpu", **kwargs)


@pytest.fixture(scope="module")
def predictor(weights):
    return make_predictor(weights)


def random_images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]


def assert_same_detections(a, b, atol=1e-5):
    assert a.image_size == b.image_size
    assert torch.equal(a.det_tokens, b.det_tokens) and torch.equal(a.pred_classes, b.pred_classes)
    torch.testing.assert_close(a.scores, b.scores, atol=atol, rtol=0)
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=atol, rtol=0)


def test_a_list_runs_one_forward_per_resized_size_and_equals_one_image_at_a_time(predictor):
    images = random_images(SIZES)
    inputs = []
    handle = predictor.model.detector.register_forward_pre_hook(lambda module, args: inputs.append(args[0].shape))
    try:
        batch = predictor(images)
    finally:
        handle.remove()
    assert sorted(tuple(shape) for shape in inputs) == [(1, 3, 32, 96), (1, 3, 64, 64), (1, 3, 80, 64), (3, 3, 64, 80)]
    assert len(batch) == len(images)
    for image, instances in zip(images, batch):
        alone = predictor(image)
        assert instances.image_size == image.shape[:2] and len(instances) == 12
        assert torch.equal(instances.det_tokens, torch.arange(12))  # every token, in token order
        assert_same_detections(instances, alone)


def python_nms(detections, iou_threshold):
    """Greedy NMS by hand: (token, score, class, box) sorted by decreasing score -> those kept."""

    def iou(a, b):
        width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        overlap = width * height
        area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
        return overlap / (area(a) + area(b) - overlap)

    kept = []
    for detection in detections:
        if all(k[2] != detection[2] or iou(k[3], detection[3]) <= iou_threshold for k in kept):
            kept.append(detection)
    return kept


@pytest.mark.parametrize("score_threshold, top_k, nms_iou", [(0.4, None, None), (0, 4, None), (0.2, 5, 0.3)])
def test_threshold_top_k_and_nms_keep_what_a_hand_computation_keeps(
    weights, predictor, score_threshold, top_k, nms_iou
):
    image = random_images([(60, 80)], seed=1)[0]
    everything = predictor(image)
    kept = make_predictor(weights, score_threshold=score_threshold, top_k=top_k, nms_iou=nms_iou)(image)

    detections = [
        (token, score, label, box)
        for token, score, label, box in zip(
            everything.det_tokens.tolist(),
            everything.scores.tolist(),
            everything.pred_classes.tolist(),
            everything.pred_boxes.tensor.tolist(),
        )
        if score >= score_threshold
    ]
    detections.sort(key=lambda d: -d[1])
    if nms_iou is not None:
        suppressed = python_nms(detections, nms_iou)
        assert len(suppressed) < len(detections), "nothing to suppress: the case does not discriminate"
        detections = suppressed
    expected = [d[0] for d in detections][:top_k]
    assert 2 <= len(expected) < 12, "the case does not discriminate"
    assert kept.det_tokens.tolist() == expected
    assert kept.scores.tolist() == sorted(kept.scores.tolist(), reverse=True)
    assert_same_detections(kept, everything[kept.det_tokens])


def test_select_detections_by_hand():
    scores = torch.tensor([0.5, 0.9, 0.2, 0.8, 0.7])
    classes = torch.tensor([0, 1, 0, 1, 0])
    # Token 3 overlaps token 1 (IoU 90/110), token 0 overlaps token 4 (IoU 90/100); token 2 is apart.
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [100, 100, 110, 110], [1, 0, 11, 10], [0, 0, 10, 9.0]])

    def select(**kwargs):
        return select_detections(scores, classes, boxes, **kwargs).tolist()

    assert select() == [0, 1, 2, 3, 4]
    assert select(score_threshold=0.6) == [1, 3, 4]
    assert select(top_k=2) == [1, 3]
    assert select(nms_iou=0.5) == [1, 4, 2]
    assert select(nms_iou=0.85) == [1, 3, 4, 2]  # 90/110 < 0.85 < 90/100: token 3 stays, token 0 goes
    assert select(score_threshold=0.3, nms_iou=0.5, top_k=2) == [1, 4]
    assert select_detections(torch.full((3,), 0.5), classes[:3], boxes[:3], top_k=2).tolist() == [0, 1]


def test_paths_arrays_and_pil_images_give_the_same_detections(predictor, tmp_path):
    # A JPEG whose EXIF orientation turns it: the path and the PIL image are read turned, as the array.
    path = str(tmp_path / "turned.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(random_images([(48, 80)])[0]).save(path, exif=exif)
    array = read_image(path, format="RGB")
    assert array.shape == (80, 48, 3)
    with Image.open(path) as pil_image:
        from_path, from_array, from_pil = predictor([path, array, pil_image])
    for instances in (from_array, from_pil):
        assert_same_detections(instances, from_path, atol=0)
    assert from_path.image_size == (80, 48)


def test_arrays_are_read_in_the_models_input_format(weights, predictor):
    image = random_images([(48, 64)])[0]
    bgr = make_predictor(weights, "model.input_format=BGR")
    assert bgr.input_format == "BGR"
    assert_same_detections(bgr(np.ascontiguousarray(image[:, :, ::-1])), predictor(image), atol=0)


def test_inputs_and_settings_it_cannot_take_are_named(weights, predictor):
    with pytest.raises(ValueError, match=r"Expected an \(H, W, 3\) uint8 RGB array, got shape \(4, 4\)"):
        predictor(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="got int"):
        predictor(3)
    with pytest.raises(ValueError, match="top_k must be None or at least 1, got 0"):
        make_predictor(weights, top_k=0)
    with pytest.raises(ValueError, match=r"score_threshold must be in \[0, 1\], got 2"):
        make_predictor(weights, score_threshold=2)
    with pytest.raises(ValueError, match=r"nms_iou must be None or in \(0, 1\], got 0"):
        make_predictor(weights, nms_iou=0)


def test_the_example_of_the_inference_page_runs(tmp_path, monkeypatch, capsys):
    """docs/inference.md's Python block with YOLOSPredictor, as written, on random quick-start weights."""
    with open(os.path.join(REPO, "docs", "inference.md"), encoding="utf-8") as f:
        blocks = ["\n".join(body) for language, _, body in fenced_blocks(f.read()) if language == "python"]
    (code,) = [block for block in blocks if "YOLOSPredictor(" in block]
    (tmp_path / "configs").symlink_to(os.path.join(REPO, "configs"))
    (tmp_path / "output" / "quickstart").mkdir(parents=True)
    torch.manual_seed(0)
    model = instantiate(load_config(config_path("quickstart")).model)
    save_checkpoint_atomic({"model": model.state_dict()}, str(tmp_path / "output" / "quickstart" / "model_final.pth"))
    for seed, name in enumerate(["image1.png", "image2.png"]):
        Image.fromarray(random_images([(64, 96)], seed)[0]).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    exec(code, {})
    assert capsys.readouterr().out.count("tensor(") == 6  # boxes, scores and classes of two images
