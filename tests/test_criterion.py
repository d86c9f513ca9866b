"""SetCriterion computes DETR's losses, worked out by hand on a small example."""
import math

import pytest
import torch

import yolos_d2.modeling.criterion as criterion_module
from yolos_d2.modeling import HungarianMatcher, SetCriterion

# One image, K = 3 tokens, C = 2 classes (index 2 = no object), two targets:
# A = class 0, cx, cy, w, h (0.3, 0.3, 0.2, 0.2), i.e. x1, y1, x2, y2 (0.2, 0.2, 0.4, 0.4);
# B = class 1, (0.7, 0.7, 0.2, 0.2), i.e. (0.6, 0.6, 0.8, 0.8).
# Token 0 predicts A (class right), token 2 predicts B (class wrong: no object is most likely),
# token 1 predicts nothing.
PROBS = [[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.2, 0.35, 0.45]]
PRED_BOXES = [[0.35, 0.35, 0.2, 0.2], [0.1, 0.9, 0.1, 0.1], [0.7, 0.4, 0.2, 0.2]]
TARGET = {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])}

# Cross-entropy, weighted mean over the tokens with weight 1 for classes 0, 1 and 0.1 for no object:
# token 0 -> class 0, token 1 -> no object, token 2 -> class 1.
CE = (-math.log(0.5) - 0.1 * math.log(0.8) - math.log(0.35)) / (1 + 0.1 + 1)
# L1 on cx, cy, w, h: token 0 vs A: 0.05 + 0.05; token 2 vs B: 0.3.
L1_SUM = 0.1 + 0.3
# GIoU, token 0 (0.25, 0.25, 0.45, 0.45) vs A: intersection 0.15 x 0.15 = 0.0225,
# union 0.04 + 0.04 - 0.0225 = 0.0575, enclosing box 0.25 x 0.25 = 0.0625.
GIOU_A = 0.0225 / 0.0575 - (0.0625 - 0.0575) / 0.0625
# token 2 (0.6, 0.3, 0.8, 0.5) vs B: no intersection, union 0.08, enclosing box 0.2 x 0.5 = 0.1.
GIOU_B = 0.0 - (0.1 - 0.08) / 0.1
GIOU_LOSS_SUM = (1 - GIOU_A) + (1 - GIOU_B)


def outputs_for(batch_size: int):
    return {
        "pred_logits": torch.tensor(PROBS).log().expand(batch_size, 3, 3).clone(),
        "pred_boxes": torch.tensor(PRED_BOXES).expand(batch_size, 3, 4).clone(),
    }


def empty_target():
    return {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}


def make_criterion(**kwargs):
    return SetCriterion(num_classes=2, matcher=HungarianMatcher(), **kwargs)


def test_matching_of_the_example():
    tokens, targets = HungarianMatcher()(outputs_for(1), [TARGET])[0]
    assert sorted(zip(tokens.tolist(), targets.tolist())) == [(0, 0), (2, 1)]


def test_losses_equal_the_hand_computation():
    losses, stats = make_criterion()(outputs_for(1), [TARGET])
    assert set(losses) == {"loss_ce", "loss_bbox", "loss_giou"}
    num_boxes = 2
    assert losses["loss_ce"].item() == pytest.approx(1.0 * CE, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(5.0 * L1_SUM / num_boxes, rel=1e-5)
    assert losses["loss_giou"].item() == pytest.approx(2.0 * GIOU_LOSS_SUM / num_boxes, rel=1e-5)
    # token 0 predicts class 0 rightly; token 2's top class is no object, not 1.
    assert stats["class_error"].item() == pytest.approx(50.0)


def test_loss_weights_scale_each_term():
    weights = {"loss_ce": 3.0, "loss_bbox": 0.5}
    losses, _ = make_criterion(loss_weights=weights, eos_coef=1.0)(outputs_for(1), [TARGET])
    ce = -(math.log(0.5) + math.log(0.8) + math.log(0.35)) / 3
    assert losses["loss_ce"].item() == pytest.approx(3.0 * ce, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(0.5 * L1_SUM / 2, rel=1e-5)
    assert losses["loss_giou"].item() == pytest.approx(2.0 * GIOU_LOSS_SUM / 2, rel=1e-5)


def test_image_without_boxes_targets_every_token_to_no_object():
    outputs = outputs_for(1)
    outputs["pred_logits"].requires_grad_()
    losses, stats = make_criterion()(outputs, [empty_target()])
    # All tokens have the same weight, so the weighted mean is the plain mean.
    expected_ce = -(math.log(0.25) + math.log(0.8) + math.log(0.45)) / 3
    assert losses["loss_ce"].item() == pytest.approx(expected_ce, rel=1e-5)
    assert losses["loss_bbox"].item() == 0 and losses["loss_giou"].item() == 0
    assert stats == {}
    sum(losses.values()).backward()
    assert torch.isfinite(outputs["pred_logits"].grad).all()


def test_box_losses_are_divided_by_the_boxes_of_the_whole_batch():
    criterion = make_criterion()
    one, _ = criterion(outputs_for(1), [TARGET])
    # The same image twice: twice the summed box losses over twice the boxes.
    two, _ = criterion(outputs_for(2), [TARGET, TARGET])
    # An image without boxes beside it adds tokens to the cross-entropy, but no boxes.
    with_empty, stats = criterion(outputs_for(2), [TARGET, empty_target()])
    for losses in (two, with_empty):
        assert losses["loss_bbox"].item() == pytest.approx(one["loss_bbox"].item(), rel=1e-5)
        assert losses["loss_giou"].item() == pytest.approx(one["loss_giou"].item(), rel=1e-5)
    assert stats["class_error"].item() == pytest.approx(50.0)


def test_box_count_is_averaged_over_workers(monkeypatch):
    # Two workers; the other one holds 6 boxes: (2 + 6) / 2 = 4 boxes per worker.
    def all_reduce(tensor):
        tensor += 6

    monkeypatch.setattr(criterion_module.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(criterion_module.dist, "all_reduce", all_reduce)
    losses, _ = make_criterion()(outputs_for(1), [TARGET])
    assert losses["loss_bbox"].item() == pytest.approx(5.0 * L1_SUM / 4, rel=1e-5)
    assert losses["loss_giou"].item() == pytest.approx(2.0 * GIOU_LOSS_SUM / 4, rel=1e-5)


def test_box_count_is_at_least_one():
    assert SetCriterion.num_boxes([empty_target(), empty_target()]) == 1.0
    assert SetCriterion.num_boxes([TARGET, empty_target()]) == 2.0


def test_no_object_weight_is_a_buffer_left_out_of_checkpoints():
    criterion = make_criterion(eos_coef=0.25)
    assert criterion.empty_weight.tolist() == [1.0, 1.0, 0.25]
    assert "empty_weight" in dict(criterion.named_buffers())
    assert "empty_weight" not in criterion.state_dict()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 0}, "num_classes must be >= 1"),
        ({"eos_coef": 0.0}, r"eos_coef must be in \(0, 1\]"),
        ({"eos_coef": 1.5}, r"eos_coef must be in \(0, 1\]"),
        (
            {"loss_weights": {"loss_ce": 1.0, "loss_boxes": 5.0}},
            r"\['loss_boxes'\]; allowed: \['loss_bbox', 'loss_ce', 'loss_giou'\]",
        ),
    ],
)
def test_invalid_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SetCriterion(**{"num_classes": 2, "matcher": HungarianMatcher(), **kwargs})
