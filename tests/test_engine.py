"""The training pieces in isolation: sampler and loader, trainer step, class-head re-initialisation."""
import itertools
import logging
import math
import os
import random
import types

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm

from yolos_d2.checkpoint import YOLOSCheckpointer
from yolos_d2.data import DatasetMapper, ResumableTrainingSampler, build_train_loader, register_coco_dataset
from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec
from yolos_d2.engine import PeriodicCheckpointer, SavePredictionImages, YOLOSTrainer

from conftest import build_model, synthetic_splits

TINY = ["model.detector.backbone.depth=1", "model.detector.backbone.num_det_tokens=5"]


def test_sampler_starts_where_an_uninterrupted_stream_would_be(monkeypatch):
    full = list(itertools.islice(ResumableTrainingSampler(10, seed=3), 57))
    assert sorted(full[:10]) == list(range(10)) and full[:10] != full[10:20]  # shuffled epochs
    assert list(itertools.islice(ResumableTrainingSampler(10, seed=3, start_index=23), 34)) == full[23:]

    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        shares.append(list(itertools.islice(ResumableTrainingSampler(10, seed=3, start_index=5), 10)))
    assert shares[0] == full[10:30:2] and shares[1] == full[11:31:2]


def _random_draws(dataset_dict):
    """A mapper recording its sample and one draw of python's, numpy's and torch's generators."""
    return {"index": dataset_dict["index"], "draws": (random.random(), np.random.rand(), torch.rand(()).item())}


@pytest.mark.parametrize("num_workers, start_iter", [(0, 3), (1, 2), (2, 0), (2, 3)])
def test_loader_batches_depend_only_on_seed_and_iteration(num_workers, start_iter):
    """Same images and augmentation draws per iteration, whatever the workers and the first iteration."""

    def batches(num_workers, start_iter, count):
        dataset = [{"index": i} for i in range(7)]
        loader = build_train_loader(
            dataset, mapper=_random_draws, total_batch_size=3, num_workers=num_workers, seed=5, start_iter=start_iter
        )
        return list(itertools.islice(loader, count))

    expected = batches(num_workers=0, start_iter=0, count=6)
    assert len({sample["draws"] for batch in expected for sample in batch}) == 18
    assert batches(num_workers, start_iter, count=6 - start_iter) == expected[start_iter:]


class _ConstantLoss(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.value = value

    def forward(self, batch):
        return {"loss_a": self.weight * self.value, "loss_b": self.weight}


def test_the_log_says_training_starts_once_the_data_is_ready(caplog):
    def batches(start_iter, seed):
        logging.getLogger("yolos_d2.test").info(f"data loader built from iteration {start_iter}")
        return itertools.repeat([{}])

    model = _ConstantLoss(1.0)
    trainer = YOLOSTrainer(model, batches, torch.optim.SGD(model.parameters(), lr=0.1), seed=0)
    with caplog.at_level(logging.INFO):
        trainer.train(2, 3)
    messages = [r.getMessage() for r in caplog.records]
    assert messages.index("data loader built from iteration 2") < messages.index("Starting training from iteration 2")


def _checkpointed_trainer(folder):
    """A trainer of ``_ConstantLoss`` saving a checkpoint every 2 iterations and model_final into ``folder``."""
    model = _ConstantLoss(1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = YOLOSTrainer(model, lambda s, seed: itertools.repeat([{}]), optimizer, seed=0)
    checkpointer = YOLOSCheckpointer(model, str(folder), trainer=trainer)
    trainer.register_hooks([PeriodicCheckpointer(checkpointer, period=2)])
    return trainer, checkpointer


def test_resume_of_a_run_killed_while_saving_model_final_saves_it(tmp_path):
    trainer, _ = _checkpointed_trainer(tmp_path)
    trainer.train(0, 4)
    finished = torch.load(tmp_path / "model_final.pth", weights_only=True)
    # As a kill during the write of model_final.pth leaves the folder: the tag names the last
    # periodic checkpoint, and the temporary file of the write is there.
    os.remove(tmp_path / "model_final.pth")
    (tmp_path / "last_checkpoint").write_text("model_0000003.pth")
    (tmp_path / ".model_final.pth.0123abcd.tmp").write_bytes(b"partial")

    trainer, checkpointer = _checkpointed_trainer(tmp_path)
    checkpointer.resume_or_load("", resume=True)
    trainer.train(trainer.iter + 1, 4)
    expected_files = ["last_checkpoint", "model_0000001.pth", "model_0000003.pth", "model_final.pth"]
    assert sorted(os.listdir(tmp_path)) == expected_files
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    resumed = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert resumed["iteration"] == finished["iteration"] == 3
    assert torch.equal(resumed["model"]["weight"], finished["model"]["weight"])


def test_non_finite_loss_stops_with_iteration_terms_and_image_ids():
    batches = lambda start_iter, seed: itertools.repeat([{"image_id": 11}, {"image_id": 12}])  # noqa: E731
    model = _ConstantLoss(float("nan"))
    trainer = YOLOSTrainer(model, batches, torch.optim.SGD(model.parameters(), lr=0.1), seed=0)
    with pytest.raises(FloatingPointError, match=r"iteration 0: \{'loss_a': nan, 'loss_b': 1.0\}.*\[11, 12\]"):
        trainer.train(0, 3)
    assert model.weight.item() == 1.0  # the bad step was not applied


@pytest.mark.parametrize("amp_dtype", [None, "bfloat16", "float16"])
def test_training_step_in_each_precision(amp_dtype):
    model = build_model("quickstart", TINY).train()
    boxes = Boxes(torch.tensor([[4.0, 8.0, 40.0, 50.0]]))
    images = [
        {
            "image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8),
            "instances": Instances((64, 96), gt_boxes=boxes, gt_classes=torch.tensor([1])),
        }
        for _ in range(2)
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = YOLOSTrainer(model, lambda s, seed: itertools.repeat(images), optimizer, amp_dtype=amp_dtype, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # float16 starts with a loss scale of 2**16: its first steps overflow and are skipped.
    trainer.train(0, 20)
    losses = trainer.storage.history("total_loss").values()
    assert all(math.isfinite(v) for v, _ in losses) and losses[-1][0] < losses[0][0]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    if amp_dtype == "float16":
        scales = [v for v, _ in trainer.storage.history("grad_scale").values()]
        assert scales[-1] < scales[0]


class _OverflowingLoss(torch.nn.Module):
    """A finite loss of 1e35 whose gradient, times a loss scale above ~3400, overflows float32."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, batch):
        return {"loss": self.weight * 1e35}


def test_float16_overflow_steps_are_skipped_and_the_scale_lowered():
    model = _OverflowingLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = YOLOSTrainer(model, lambda s, seed: itertools.repeat([{}]), optimizer, amp_dtype="float16", seed=0)
    trainer.train(0, 6)
    scales = [v for v, _ in trainer.storage.history("grad_scale").values()]
    assert scales == [2.0**16 / 2**i for i in range(6)]
    # Five overflowing steps skipped, then one step of the clipped gradient (norm 0.1).
    assert model.weight.item() == pytest.approx(0.9)


def test_unknown_amp_dtype_is_refused():
    model = _ConstantLoss(1.0)
    with pytest.raises(ValueError, match="train.amp.dtype"):
        YOLOSTrainer(model, None, torch.optim.SGD(model.parameters(), lr=0.1), amp_dtype="float8")


def test_checkpoint_with_another_class_count_reinitialises_only_the_class_head(tmp_path, caplog):
    coco = build_model("yolos_ti", TINY)
    path = str(tmp_path / "coco.pth")
    torch.save({"model": coco.state_dict()}, path)
    mine = build_model("yolos_ti", TINY + ["model.detector.num_classes=3"])
    fresh_head = mine.detector.class_embed.layers[2].weight.clone()
    with caplog.at_level(logging.WARNING):
        YOLOSCheckpointer(mine).load(path)
    assert "class head for 80 classes, the model for 3" in caplog.text
    assert torch.equal(mine.detector.class_embed.layers[2].weight, fresh_head)
    for k, v in mine.state_dict().items():
        if not k.startswith("detector.class_embed.layers.2."):
            assert torch.equal(v, coco.state_dict()[k]), k


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_prediction_images_log_the_threshold_and_the_boxes_drawn(tmp_path, caplog, threshold):
    spec = SyntheticShapesSpec(3, seed=5, image_size=48)
    ((json_file, image_root),) = synthetic_splits(str(tmp_path), {"hook": spec}).values()
    name = register_coco_dataset(f"hook_images_{threshold}", json_file, image_root)
    model = build_model("quickstart", ["model.detector.backbone.depth=1", "model.detector.backbone.num_det_tokens=4"])
    mapper = DatasetMapper(is_train=False, augmentations=[], image_format="RGB")
    output = tmp_path / "drawn"
    hook = SavePredictionImages(name, mapper, str(output), num_images=8, score_threshold=threshold)
    hook.trainer = types.SimpleNamespace(iter=9, max_iter=10, model=model)
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        hook.after_train()
    assert len(os.listdir(output)) == 3
    drawn = 3 * 4 if threshold == 0.0 else 0  # every token's box, or none: scores lie in [0, 1]
    expected = f"Saved predictions on 3 images to {output}: {drawn} boxes scoring >= {threshold} drawn (highest score 0."
    assert expected in caplog.text
