"""Infinite or NaN predictions stop training where they start, naming the iteration, the losses and the images."""
import ast
import itertools
import re

import pytest
import torch
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from conftest import build_model, config_path, run_train_net
from benchmarks import nonfinite_check
from yolos_d2.config import prepare_config
from yolos_d2.engine import YOLOSTrainer
from yolos_d2.modeling import HungarianMatcher, SetCriterion
from yolos_d2.modeling.criterion import NonFinitePredictionError

TINY = ["model.detector.backbone.depth=1", "model.detector.backbone.num_det_tokens=5"]


class _UnusedMatcher(HungarianMatcher):
    def forward(self, outputs, targets):
        raise AssertionError("the matcher ran on non-finite predictions")


def test_criterion_names_the_outputs_and_images_before_matching():
    outputs = {"pred_logits": torch.zeros(3, 4, 3), "pred_boxes": torch.full((3, 4, 4), 0.5)}
    outputs["pred_logits"][1, 2, 0] = float("nan")
    outputs["pred_boxes"][0, 0, 0] = float("inf")
    outputs["pred_boxes"][2, 3, 1] = float("nan")
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}] * 3
    with pytest.raises(NonFinitePredictionError) as info:
        SetCriterion(num_classes=2, matcher=_UnusedMatcher())(outputs, targets)
    assert isinstance(info.value, FloatingPointError)
    assert str(info.value) == (
        "pred_logits: NaN in batch images [1]; pred_boxes: inf in batch images [0], NaN in batch images [2]"
    )


def _batch(image_ids):
    boxes = Boxes(torch.tensor([[4.0, 8.0, 40.0, 50.0]]))
    return [
        {
            "image_id": image_id,
            "image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(i)),
            "instances": Instances((64, 96), gt_boxes=boxes, gt_classes=torch.tensor([1])),
        }
        for i, image_id in enumerate(image_ids)
    ]


def test_huge_learning_rate_stops_at_the_first_non_finite_predictions_with_the_last_losses():
    """
    lr 1e30: the first step (iteration 0) is computed from the initial weights, its update makes
    them ~1e30, so the predictions of iteration 1 overflow; the error gives iteration 0's losses.
    """
    batch = _batch([17, 42])
    model = build_model("quickstart", TINY).train()
    with EventStorage():
        first_losses = {k: v.item() for k, v in model(batch).items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e30)
    trainer = YOLOSTrainer(model, lambda start_iter, seed: itertools.repeat(batch), optimizer, seed=0)
    with pytest.raises(FloatingPointError) as info:
        trainer.train(0, 5)
    message = str(info.value)
    assert message.startswith("Predictions became infinite or NaN at iteration 1 (pred_logits: ")
    assert message.endswith("image ids of the batch on rank 0: [17, 42]")
    logged = ast.literal_eval(re.search(r"losses of iteration 0: (\{.*?\})", message)[1])
    assert logged == pytest.approx(first_losses, rel=1e-6)


def test_non_finite_predictions_at_the_first_iteration_say_no_loss_was_computed():
    model = build_model("quickstart", TINY).train()
    with torch.no_grad():
        model.detector.bbox_embed.layers[2].bias.fill_(float("nan"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    trainer = YOLOSTrainer(model, lambda start_iter, seed: itertools.repeat(_batch([5])), optimizer, seed=0)
    with pytest.raises(FloatingPointError, match=r"at iteration 0 \(pred_boxes: NaN in batch images \[0\]\); "
                                                 r"no loss computed yet in this run; image ids .*: \[5\]$"):
        trainer.train(0, 2)


def test_train_net_with_lr_1e30_names_the_iteration(tiny_config, tmp_path):  # noqa: F811
    status, log = run_train_net(tiny_config, str(tmp_path / "out"), "optimizer.lr=1e30")
    assert status != 0
    assert "matrix contains invalid numeric entries" not in log
    error = re.search(r"FloatingPointError: Predictions became infinite or NaN at iteration 1 .*", log)
    assert error, log[-3000:]
    image_ids = ast.literal_eval(re.search(r"image ids of the batch on rank 0: (\[.*\])$", error[0])[1])
    assert len(image_ids) == 4 and set(image_ids) <= set(range(1, 49))  # 4 of the 48 training images


def test_benchmark_of_the_check_times_it_alone_and_in_a_step_with_and_without_it(monkeypatch):
    """Each timed call run once on a clock giving 1, 2 and 3 s: how often each ran the check, and the rows."""
    checks = []
    monkeypatch.setattr("yolos_d2.modeling.criterion.check_finite_predictions", checks.append)
    checks_per_call = {}

    def once(fns, **timing):
        for name, fn in fns.items():
            before = len(checks)
            fn()
            checks_per_call[name] = len(checks) - before
        return {name: float(seconds) for seconds, name in enumerate(fns, start=1)}

    monkeypatch.setattr(nonfinite_check, "time_interleaved", once)
    rows = nonfinite_check.run(prepare_config(config_path("yolos_ti"), TINY), batch=1, size=(64, 64), repeats=1)
    assert checks_per_call == {"check alone": 1, "training step": 1, "step without check": 0}
    assert [(row.name, row.seconds, row.ratio) for row in rows] == [
        ("check alone", 1.0, 0.5),
        ("training step", 2.0, 1.0),
        ("step without check", 3.0, 1.5),
    ]
