"""
YOLOSPredictor on lists of images: one forward per resized size, each image's detections those of
the image alone; the detections kept by score threshold, top-k and class-wise NMS; the three kinds
of input; the example of docs/inference.md.
"""
import inspect
import os
from unittest import mock

import numpy as np
import pytest
import torch
from detectron2.config import instantiate
from PIL import Image

from conftest import (
    PREDICTOR_SIZES,
    REPO,
    SMALL_PREDICTOR as SMALL,
    build_model,
    config_path,
    favour_class_0,
    fenced_blocks,
    make_predictor,
    random_images,
)
from yolos_d2.checkpoint import save_checkpoint_atomic
from yolos_d2.config import load_config
from yolos_d2.data import DEFAULT_MAX_SIZE, read_image
from yolos_d2.export import YOLOSPipeline
from yolos_d2.inference import YOLOSPredictor
from yolos_d2.modeling import check_selection, select_detections


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


@pytest.fixture(scope="module")
def predictor(weights):
    return make_predictor(weights)


# The same image in a batch of another size, or at another row of a batch, runs other matrix-product
# blockings (AMX, AVX-512 and AVX2 kernels sum the products in other orders): its outputs differ by
# float32 rounding, a few ulps per sum compounded over the 2 blocks and the heads. REDUCTION_ULPS
# bounds that count (measured here: 2).
EPS = torch.finfo(torch.float32).eps  # float32's spacing at 1
REDUCTION_ULPS = 16
# Scores: a softmax of logits below 16 here (measured 8.3; ulp at most 16 eps), moved by at most
# 1/4 of a logit's change.
SCORE_ATOL = REDUCTION_ULPS * EPS * 16 / 4


def box_atol(image_size) -> float:
    """Boxes: sigmoid outputs (below 1, ulp at most eps) scaled by the image's sides, in pixels."""
    return REDUCTION_ULPS * EPS * max(image_size)


def assert_same_detections(a, b, exact=False):
    """The same detections, to float32 rounding (see REDUCTION_ULPS), or ``exact``ly."""
    assert a.image_size == b.image_size
    assert torch.equal(a.det_tokens, b.det_tokens) and torch.equal(a.pred_classes, b.pred_classes)
    score_atol, boxes_atol = (0, 0) if exact else (SCORE_ATOL, box_atol(a.image_size))
    torch.testing.assert_close(a.scores, b.scores, atol=score_atol, rtol=0)
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=boxes_atol, rtol=0)


def test_a_list_runs_one_forward_per_resized_size_and_equals_one_image_at_a_time(predictor):
    # (height, width) -> resized: 48x64, 51x70 and 60x80 all to 64x80 (one forward), 64x48 to 80x64,
    # 30x100 to 32x96 (the longer side at most the config's 106), 64x64 kept.
    images = random_images(PREDICTOR_SIZES)
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
        for image in (path, pil_image):
            np.testing.assert_array_equal(predictor.image_array(image), array)
        # One forward of the three, each at its own row of the batch.
        from_path, from_array, from_pil = predictor([path, array, pil_image])
    for instances in (from_array, from_pil):
        assert_same_detections(instances, from_path)
    assert from_path.image_size == (80, 48)


@pytest.mark.parametrize("max_size, resized", [(64, (21, 64)), (None, (32, 96))])
def test_the_predictor_and_the_pipeline_cap_the_longer_side_alike(weights, max_size, resized):
    """
    A 30x100 image: the config's resize (shorter side to 64, longer at most 106, sides floored to
    16-pixel patches) gives 32x96; a max_size of 64 scales that to 21x64 (32 * 64 / 96 = 21.3).
    """
    predictor = make_predictor(weights, max_size=max_size)
    augmentations = instantiate(load_config(config_path("yolos_ti"), SMALL).dataloader.test.mapper.augmentations)
    pipeline = YOLOSPipeline(predictor.model, augmentations, max_size=max_size)
    image = random_images([(30, 100)])[0]
    normalized = []  # (height, width) of each image the model normalises, as the detector gets it
    normalize = predictor.model.normalize
    record = lambda pixels: normalized.append(tuple(pixels.shape[1:])) or normalize(pixels)  # noqa: E731
    with mock.patch.object(predictor.model, "normalize", side_effect=record):
        predictor(image)
        pipeline(torch.from_numpy(image))
    assert normalized == [resized, resized]
    defaults = [inspect.signature(f).parameters["max_size"].default for f in (YOLOSPredictor, YOLOSPipeline)]
    assert defaults == [DEFAULT_MAX_SIZE, DEFAULT_MAX_SIZE]


def test_arrays_are_read_in_the_models_input_format(weights, predictor):
    image = random_images([(48, 64)])[0]
    bgr = make_predictor(weights, "model.input_format=BGR")
    assert bgr.input_format == "BGR"
    # The model flips BGR to RGB before anything else: the same computation on the same numbers.
    assert_same_detections(bgr(np.ascontiguousarray(image[:, :, ::-1])), predictor(image), exact=True)


def test_inputs_and_settings_it_cannot_take_are_named(weights, predictor):
    with pytest.raises(ValueError, match=r"Expected an \(H, W, 3\) uint8 RGB array, got shape \(4, 4\)"):
        predictor(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="got int"):
        predictor(3)
    with pytest.raises(ValueError, match=r"Expected an image of at least 1x1 pixels, got one of 0x0"):
        predictor(np.zeros((0, 0, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"Expected an image of at least 1x1 pixels, got one of 5x0"):
        predictor([random_images([(8, 8)])[0], Image.new("RGB", (5, 0))])
    with pytest.raises(ValueError, match="top_k must be None or a whole number of at least 1, got 2.5"):
        make_predictor(weights, top_k=2.5)
    with pytest.raises(ValueError, match=r"score_threshold must be a number in \[0, 1\], got '0.5'"):
        make_predictor(weights, score_threshold="0.5")
    for max_size in (1, 15, -5, 16.0, True):
        with pytest.raises(ValueError, match=rf"at least the model's patch size, 16; got {max_size!r}$"):
            make_predictor(weights, max_size=max_size)
    assert make_predictor(weights, max_size=16).max_size == 16


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"score_threshold": 2}, r"score_threshold must be a number in \[0, 1\], got 2"),
        ({"score_threshold": -0.1}, r"score_threshold must be a number in \[0, 1\], got -0.1"),
        ({"score_threshold": float("nan")}, r"score_threshold must be a number in \[0, 1\], got nan"),
        ({"score_threshold": "0.5"}, r"score_threshold must be a number in \[0, 1\], got '0.5'"),
        ({"score_threshold": True}, r"score_threshold must be a number in \[0, 1\], got True"),
        ({"top_k": 0}, "top_k must be None or a whole number of at least 1, got 0"),
        ({"top_k": 2.5}, "top_k must be None or a whole number of at least 1, got 2.5"),
        ({"top_k": True}, "top_k must be None or a whole number of at least 1, got True"),
        ({"top_k": "3"}, "top_k must be None or a whole number of at least 1, got '3'"),
        ({"nms_iou": 0}, r"nms_iou must be None or a number in \(0, 1\], got 0"),
        ({"nms_iou": 1.5}, r"nms_iou must be None or a number in \(0, 1\], got 1.5"),
        ({"nms_iou": float("nan")}, r"nms_iou must be None or a number in \(0, 1\], got nan"),
    ],
)
def test_selection_settings_of_another_type_or_out_of_range_are_named(settings, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_selection(**settings)


def test_selection_settings_take_python_and_numpy_numbers():
    for settings in [{}, {"score_threshold": 1, "top_k": 1, "nms_iou": 1}, {"score_threshold": np.float32(0.5)},
                     {"top_k": np.int64(3), "nms_iou": np.float64(0.5)}]:
        check_selection(**settings)


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
