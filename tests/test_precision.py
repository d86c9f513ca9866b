"""Inference in int8 and bfloat16: outputs near float32's, and a clear answer where a precision cannot run."""
import copy
import logging

import numpy as np
import pytest
import torch
from detectron2.config import instantiate

from conftest import (
    PREDICTOR_SIZES,
    SMALL_PREDICTOR,
    build_model,
    favour_class_0,
    make_predictor,
    random_images,
    random_quickstart_model,
)
from yolos_d2.checkpoint import save_checkpoint_atomic
from yolos_d2.evaluation.analysis import average_precisions, coco_precision, read_detections, read_ground_truth
from yolos_d2.inference import precision as precision_module
from yolos_d2.export.onnx import OnnxRuntimeDetector
from yolos_d2.inference.precision import apply_precision, check_precision, quantize_linear_int8
from yolos_d2.modeling.transformer import Block
from yolos_d2.utils import hardware

# A 2-block YOLOS-Ti, 12 [DET] tokens, on a 64x96 input.
SMALL_TI = ["model.detector.backbone.depth=2", "model.detector.backbone.num_det_tokens=12"]


@pytest.fixture(scope="module")
def detector_and_images():
    model = build_model("yolos_ti", SMALL_TI)
    torch.manual_seed(1)
    return model.detector, torch.randn(2, 3, 64, 96)


def _max_differences(a, b):
    return tuple((a[k] - b[k]).abs().max().item() for k in ("pred_logits", "pred_boxes"))


def test_pytorch_int8_detector_runs_the_plain_block_path_and_stays_near_float32(detector_and_images, monkeypatch):
    detector, images = detector_and_images
    quantized = quantize_linear_int8(copy.deepcopy(detector))
    assert type(quantized.backbone.blocks[0].attn.proj) is torch.ao.nn.quantized.dynamic.Linear
    fast_calls = []
    original = Block._inference_forward
    monkeypatch.setattr(Block, "_inference_forward", lambda *a: fast_calls.append(1) or original(*a))
    with torch.inference_mode():
        expected, got = detector(images), quantized(images)
    assert len(fast_calls) == 2, "the float32 detector takes the fast path; the int8 one steps aside"
    logits, boxes = _max_differences(expected, got)
    # Measured 1.3e-2 and 3.4e-3 (logits in [-5, 5], boxes in [0, 1]).
    assert 0 < logits < 0.05 and 0 < boxes < 0.01


def test_onnxruntime_int8_export_stays_near_float32(detector_and_images):
    detector, images = detector_and_images
    with torch.inference_mode():
        expected = detector(images)
    float32 = OnnxRuntimeDetector.export(detector, images[:1, :, :48])
    # Another batch and size than the export's example: both are dynamic.
    assert max(_max_differences(expected, float32(images))) < 1e-4
    logits, boxes = _max_differences(expected, float32.int8()(images))
    assert 0 < logits < 0.05 and 0 < boxes < 0.01


def _coco_results(instances_per_image):
    """COCO's results format of detectron2 ``Instances``, one per image, image ``i`` as image id ``i``."""
    results = []
    for i, instances in enumerate(instances_per_image):
        boxes = instances.pred_boxes.tensor.clone()
        boxes[:, 2:] -= boxes[:, :2]  # XYXY -> XYWH
        for box, category, score in zip(boxes.tolist(), instances.pred_classes.tolist(), instances.scores.tolist()):
            results.append({"image_id": i, "category_id": category, "bbox": box, "score": score})
    return results


def _ap_against(reference, detections, num_classes: int) -> float:
    """COCO AP (0-100) of ``detections`` with ``reference``'s boxes and classes as the ground truth."""
    annotations = [dict(result, id=n, iscrowd=0) for n, result in enumerate(_coco_results(reference))]
    images = [{"id": i} for i in range(len(reference))]
    categories = [{"id": k, "name": str(k)} for k in range(num_classes)]
    ground_truth = read_ground_truth({"images": images, "categories": categories, "annotations": annotations})
    results = read_detections(_coco_results(detections), ground_truth, "detections")
    return 100 * average_precisions(coco_precision(ground_truth, results))["AP"]


def test_onnxruntime_int8_keeps_the_ap_of_the_float32_detections(tmp_path):
    cfg, model = random_quickstart_model(str(tmp_path), "int8_ap_val", num_images=8, depth=2)
    # Class 0 clearly ahead of the others, and boxes spread over the image (the box head's last
    # layer tripled), so that an error of the int8 boxes shows in COCO's IoUs up to 0.95.
    favour_class_0(model)
    with torch.no_grad():
        model.detector.bbox_embed.layers[-1].weight *= 3
    inputs = [inputs for batch in instantiate(cfg.dataloader.test) for inputs in batch]
    with torch.no_grad():
        float32 = [output["instances"] for output in model(inputs)]
        model.detector = OnnxRuntimeDetector.export(model.detector, torch.zeros(1, 3, 64, 64)).int8()
        int8 = [output["instances"] for output in model(inputs)]
    assert _ap_against(float32, float32, model.detector.num_classes) == 100
    # Measured 100 (each int8 box's IoU with its float32 one >= 0.97) where the CPU has VNNI and
    # where it has AVX2 only; full-range int8 weights, whose products saturate on the latter
    # (quantize_onnx_int8), measured 93.9 there.
    assert _ap_against(float32, int8, model.detector.num_classes) > 99


def test_bf16_on_a_cpu_without_native_bf16_warns_and_runs_float32(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2"}))
    precision_module.bf16_is_fast.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            chosen = apply_precision(torch.nn.Linear(2, 2), "bf16", "cpu")
    finally:
        precision_module.bf16_is_fast.cache_clear()
    assert chosen.name == "fp32"
    assert "does not compute bfloat16 natively (no avx512_bf16 or amx_bf16" in caplog.text


def test_bf16_autocast_takes_the_plain_block_path_and_stays_near_float32(detector_and_images, monkeypatch):
    detector, images = detector_and_images
    monkeypatch.setattr(precision_module, "bf16_is_fast", lambda device: True)
    chosen = apply_precision(detector, "bf16", "cpu")
    assert chosen.name == "bf16"
    with torch.inference_mode():
        expected = detector(images)
        dtypes = []
        hook = detector.backbone.blocks[0].mlp.fc1.register_forward_hook(lambda *args: dtypes.append(args[-1].dtype))
        with chosen.context():
            got = detector(images)
        hook.remove()
    assert dtypes == [torch.bfloat16]  # the products of the blocks (the heads may read float32)
    logits, boxes = _max_differences(expected, {k: v.float() for k, v in got.items()})
    assert 0 < logits < 0.2 and 0 < boxes < 0.05


@pytest.mark.parametrize(
    "precision, device, message",
    [("int4", "cpu", "must be one of fp32, bf16, int8"), ("int8", "cuda", "runs on the CPU only")],
)
def test_precisions_that_cannot_run_are_named(precision, device, message):
    with pytest.raises(ValueError, match=message):
        check_precision(precision, device)


def test_predictor_in_int8_keeps_the_float32_detections_order_and_nearly_their_scores(tmp_path):
    model = build_model("yolos_ti", SMALL_PREDICTOR)
    favour_class_0(model)  # scores from about 0.1 to 0.95
    weights = str(tmp_path / "small.pth")
    save_checkpoint_atomic({"model": model.state_dict()}, weights)
    images = random_images(PREDICTOR_SIZES)
    expected = make_predictor(weights)(images)
    predictor = make_predictor(weights, precision="int8")
    assert predictor.precision.name == "int8"
    assert type(predictor.model.detector.backbone.blocks[0].mlp.fc1) is torch.ao.nn.quantized.dynamic.Linear
    for a, b in zip(expected, predictor(images)):
        assert torch.equal(a.det_tokens, b.det_tokens)
        # Class 0's weights scaled up twentyfold (favour_class_0) scale the logits' int8 error alike.
        assert np.abs((a.scores - b.scores).numpy()).max() < 0.2
        assert np.abs((a.pred_boxes.tensor - b.pred_boxes.tensor).numpy()).max() < 0.02 * max(a.image_size)
