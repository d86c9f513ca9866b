"""The Hungarian matcher finds the minimum-cost one-to-one assignment under DETR's matching cost."""
import itertools

import pytest
import torch

from yolos_d2.modeling import HungarianMatcher

NUM_CLASSES = 5


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 4) cx, cy, w, h normalised, inside the image."""
    centers = 0.3 + 0.4 * torch.rand(n, 2, generator=generator)
    sizes = 0.05 + 0.5 * torch.rand(n, 2, generator=generator)
    return torch.cat([centers, sizes], -1)


def random_case(num_tokens: int, num_targets_per_image, seed: int):
    generator = torch.Generator().manual_seed(seed)
    batch_size = len(num_targets_per_image)
    outputs = {
        "pred_logits": torch.randn(batch_size, num_tokens, NUM_CLASSES + 1, generator=generator),
        "pred_boxes": random_boxes(batch_size * num_tokens, generator).view(batch_size, num_tokens, 4),
    }
    targets = [
        {"labels": torch.randint(0, NUM_CLASSES, (m,), generator=generator), "boxes": random_boxes(m, generator)}
        for m in num_targets_per_image
    ]
    return outputs, targets


def giou_by_hand(a, b) -> float:
    """GIoU of two cx, cy, w, h boxes, from areas."""
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = a[2] * a[3] + b[2] * b[3] - inter
    enclosing = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    return inter / union - (enclosing - union) / enclosing


def cost_by_hand(logits, pred_box, label, box, weights=(1.0, 5.0, 2.0)) -> float:
    p, b = pred_box.tolist(), box.tolist()
    class_cost = -logits.softmax(-1)[label].item()
    l1 = sum(abs(x - y) for x, y in zip(p, b))
    return weights[0] * class_cost + weights[1] * l1 - weights[2] * giou_by_hand(p, b)


def min_cost_by_enumeration(cost: torch.Tensor):
    """Try every injective map of the M targets (columns) to the K tokens (rows)."""
    num_tokens, num_targets = cost.shape
    best = min(
        itertools.permutations(range(num_tokens), num_targets),
        key=lambda tokens: sum(cost[t, j].item() for j, t in enumerate(tokens)),
    )
    return {(t, j) for j, t in enumerate(best)}


@pytest.mark.parametrize("weights", [(1.0, 5.0, 2.0), (2.0, 1.0, 0.5)])
def test_cost_matrices_follow_detr_formula(weights):
    outputs, targets = random_case(4, [3, 0, 2], seed=0)
    matcher = HungarianMatcher(*weights)
    costs = matcher.cost_matrices(outputs, targets)
    assert [tuple(c.shape) for c in costs] == [(4, 3), (4, 0), (4, 2)]
    for b, (cost, target) in enumerate(zip(costs, targets)):
        expected = torch.tensor(
            [
                [
                    cost_by_hand(outputs["pred_logits"][b, i], outputs["pred_boxes"][b, i], label, box, weights)
                    for label, box in zip(target["labels"], target["boxes"])
                ]
                for i in range(4)
            ]
        ).view(4, -1)
        assert torch.allclose(cost, expected, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
# M = 0 and M = K included.
@pytest.mark.parametrize(
    "num_tokens, num_targets_per_image", [(6, [4, 0, 1]), (4, [4, 2]), (3, [3, 0]), (6, [2, 4])]
)
def test_assignment_has_minimum_total_cost(seed, num_tokens, num_targets_per_image):
    outputs, targets = random_case(num_tokens, num_targets_per_image, seed)
    matcher = HungarianMatcher()
    indices = matcher(outputs, targets)
    assert len(indices) == len(targets)
    costs = matcher.cost_matrices(outputs, targets)
    for (tokens, target_ids), cost, m in zip(indices, costs, num_targets_per_image):
        assert tokens.dtype == target_ids.dtype == torch.int64
        assert len(tokens) == len(target_ids) == m
        assert set(zip(tokens.tolist(), target_ids.tolist())) == min_cost_by_enumeration(cost)


def test_batch_without_any_target_gives_empty_indices():
    outputs, targets = random_case(5, [0, 0], seed=1)
    for tokens, target_ids in HungarianMatcher()(outputs, targets):
        assert tokens.shape == target_ids.shape == (0,)
        assert tokens.dtype == target_ids.dtype == torch.int64


def test_all_zero_costs_are_refused():
    with pytest.raises(ValueError, match="cannot all be 0"):
        HungarianMatcher(0, 0, 0)
