"""Learning-rate schedules and the epoch arithmetic of the paper configs, against the original's loop."""
import math

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.solver import LRMultiplier
from omegaconf import OmegaConf

from yolos_d2.config import load_config
from yolos_d2.engine import EpochCosine, epochs_to_iters, iters_per_epoch, warmup_cosine
from yolos_d2.tools import cli
from yolos_d2.tools.train import argument_parser, load_checked_config, resolve_schedule

from conftest import config_path

COCO_TRAIN_IMAGES = 118287


def _original_loop_lrs(epochs, iters, base_lr, min_lr, warmup_epochs, warmup_lr):
    """
    The lr of each iteration in the original's main.py loop: timm's CosineLRScheduler (the
    original's util/scheduler.py is a copy of it) stepped with ``step(epoch)`` after each epoch.
    """
    from timm.scheduler import CosineLRScheduler

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = CosineLRScheduler(
        optimizer, t_initial=epochs, lr_min=min_lr, warmup_t=warmup_epochs, warmup_lr_init=warmup_lr,
        cycle_limit=1, t_in_epochs=True,
    )
    lrs = []
    for epoch in range(epochs):
        lrs += [optimizer.param_groups[0]["lr"]] * iters
        scheduler.step(epoch)
    return lrs


@pytest.mark.parametrize("warmup_epochs", [0, 2])
def test_epoch_cosine_is_the_originals_to_the_iteration(warmup_epochs):
    epochs, iters, base_lr = 7, 3, 1e-3
    expected = _original_loop_lrs(epochs, iters, base_lr, 1e-7, warmup_epochs, 1e-6)
    schedule = EpochCosine(
        base_lr=base_lr, min_lr=1e-7, epochs=epochs, iters_per_epoch=iters, max_iter=epochs * iters,
        warmup_epochs=warmup_epochs, warmup_lr=1e-6,
    )
    # As detectron2's LRScheduler hook applies it: iteration i trains at the value of i / max_iter.
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    multiplier = LRMultiplier(optimizer, schedule, max_iter=epochs * iters)
    ours = []
    for _ in range(epochs * iters):
        ours.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        multiplier.step()
    assert ours == pytest.approx(expected, rel=1e-12)
    # The staircase lags one epoch: epochs 0 and 1 train at the same value.
    assert ours[0] == ours[iters] and ours[2 * iters] != ours[iters]


def test_iterations_per_epoch_are_the_original_samplers():
    # DistributedSampler pads 118,287 to 8 x 14,786; batches of 2 per GPU without the last partial one.
    assert iters_per_epoch(COCO_TRAIN_IMAGES, 16) == math.ceil(COCO_TRAIN_IMAGES / 8) // 2 == 7393
    assert iters_per_epoch(COCO_TRAIN_IMAGES, 8) == math.ceil(COCO_TRAIN_IMAGES / 8) // 1 == 14786
    assert epochs_to_iters(300, COCO_TRAIN_IMAGES, 16) == 300 * 7393
    with pytest.raises(ValueError, match="total_batch_size"):
        iters_per_epoch(COCO_TRAIN_IMAGES, 0)
    with pytest.raises(ValueError, match="epochs must be an integer > 0, got 'abc'"):
        epochs_to_iters("abc", COCO_TRAIN_IMAGES, 16)


@pytest.mark.parametrize("variant, epochs, batch", [("yolos_ti", 300, 16), ("yolos_s", 150, 8), ("yolos_b", 150, 8)])
def test_paper_schedules_follow_the_total_batch_after_overrides(variant, epochs, batch):
    for total in (batch, 8, 32):
        cfg = load_config(config_path(variant), [f"dataloader.train.total_batch_size={total}"])
        images = epochs * COCO_TRAIN_IMAGES
        assert cfg.train.max_iter == pytest.approx(images / total, rel=0.005)
        assert cfg.train.eval_period == cfg.train.checkpointer.period == pytest.approx(COCO_TRAIN_IMAGES / total, rel=0.005)
        schedule = instantiate(cfg.lr_multiplier)
        assert (schedule.epochs, schedule.iters_per_epoch, schedule.max_iter) == (
            epochs, cfg.train.eval_period, cfg.train.max_iter
        )
    # An explicit override of a derived value wins; overriding the epochs moves all three.
    cfg = load_config(config_path(variant), ["train.max_iter=1000", "train.schedule.epochs=2"])
    assert cfg.train.max_iter == 1000 and instantiate(cfg.lr_multiplier).max_iter == 1000
    assert cfg.train.eval_period == math.ceil(COCO_TRAIN_IMAGES / batch)


def test_a_saved_config_reloads_for_training_with_the_schedule_it_computes(tmp_path):
    # The config.yaml a run saves (detectron2's default_setup) keeps the interpolations.
    saved = str(tmp_path / "config.yaml")
    LazyConfig.save(load_config(config_path("yolos_ti"), ["dataloader.train.total_batch_size=8"]), saved)
    for name in ("yolos_d2.iters_per_epoch", "yolos_d2.epochs_to_iters"):
        OmegaConf.clear_resolver(name)  # as in a new process, where no config file registered them
    argv = ["--config-file", saved, "--device", "cpu", "train.init_checkpoint="]  # no weights to look for
    cfg = load_checked_config(cli.parse_args(argument_parser(), argv))
    assert cfg.train.eval_period == math.ceil(COCO_TRAIN_IMAGES / 8)
    assert cfg.train.max_iter == 300 * math.ceil(COCO_TRAIN_IMAGES / 8)


def test_quickstart_keeps_the_per_iteration_cosine_and_follows_overrides():
    cfg = load_config(config_path("quickstart"), ["optimizer.lr=1e-3", "train.max_iter=100", "lr_multiplier.warmup_iters=0"])
    schedule = instantiate(cfg.lr_multiplier)
    assert schedule(0.0) == 1.0
    assert schedule(0.5) * 1e-3 == pytest.approx((1e-3 + 1e-7) / 2)
    assert schedule(1.0) * 1e-3 == pytest.approx(1e-7)


def test_warmup_is_linear_over_its_iterations_then_cosine():
    schedule = warmup_cosine(base_lr=1e-3, min_lr=1e-5, max_iter=1000, warmup_iters=100, warmup_factor=0.01)
    assert schedule(0.0) == pytest.approx(0.01)
    cosine = lambda t: 0.01 + 0.5 * (1 - 0.01) * (1 + math.cos(math.pi * t))  # noqa: E731
    assert schedule(0.05) == pytest.approx(0.01 + 0.5 * (cosine(0.1) - 0.01))
    assert schedule(0.5) == pytest.approx(cosine(0.5))
    with pytest.raises(ValueError, match="warmup_iters"):
        warmup_cosine(base_lr=1e-3, min_lr=1e-5, max_iter=10, warmup_iters=11)
    with pytest.raises(ValueError, match="min_lr"):
        warmup_cosine(base_lr=1e-3, min_lr=1e-2, max_iter=10)


def test_weight_decay_override_reaches_the_decayed_group():
    cfg = load_config(config_path("yolos_ti"), ["model.detector.backbone.depth=1", "optimizer.weight_decay=0.05"])
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert "detector.backbone.blocks.0.attn.qkv.weight" in {names[id(p)] for p in decay["params"]}


@pytest.mark.parametrize("scale_lr", [False, True])
def test_another_total_batch_warns_once_and_scales_the_lr_only_when_asked(caplog, scale_lr):
    overrides = ["dataloader.train.total_batch_size=8", f"train.schedule.scale_lr={scale_lr}"]
    cfg = load_config(config_path("yolos_ti"), overrides)
    with caplog.at_level("INFO", logger="yolos_d2"):
        resolve_schedule(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert cfg.optimizer.lr == pytest.approx(2.5e-5 if scale_lr else 5e-5)
    assert len(warnings) == (0 if scale_lr else 1)
    if warnings:
        assert "16 images per iteration" in warnings[0] and "train.schedule.scale_lr=True" in warnings[0]
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Schedule:")]
    assert "300 epochs of 14786 iterations" in line and "train.max_iter 4435800" in line


def test_the_paper_batch_does_not_warn(caplog):
    cfg = load_config(config_path("yolos_ti"))
    with caplog.at_level("INFO", logger="yolos_d2"):
        resolve_schedule(cfg)
    assert not [r for r in caplog.records if r.levelname == "WARNING"] and cfg.optimizer.lr == 5e-5
