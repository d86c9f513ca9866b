"""
No dead config keys: overriding any numeric value of a paper config changes something built from
it (the model, the optimizer, the schedule, the data loaders, the trainer or its hooks), as
the training command (yolos_d2.tools.train) builds them, or is refused at start saying why
(a key of a group switched off, such as train.ema.decay without train.ema.enabled=True). The exceptions are DOCUMENTED_NO_EFFECT, each with its reason.
"""
import tempfile

import pytest
import torch
from detectron2.config import instantiate
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from yolos_d2.checkpoint import YOLOSCheckpointer
from yolos_d2.config import ConfigError, load_config
from yolos_d2.engine import EMAHook, YOLOSTrainer
from yolos_d2.tools import train as train_tool

from conftest import VARIANTS, config_path

# Every numeric key of two paper configs, each building a model, optimizer, loaders and hooks:
# about 40 s on 2 CPU cores (-m slow).
pytestmark = pytest.mark.slow

# Keys that change nothing that is built, and why (also listed in docs/training.md).
DOCUMENTED_NO_EFFECT = {
    # Compared with the total batch to warn; it scales the lr only with train.schedule.scale_lr=True.
    "train.schedule.reference_batch_size",
}
# Depth 1 keeps each build fast (the depth key itself is still overridden on top of it); a fixed
# seed keeps the trainer's seed from being drawn at random.
BASE = ["model.detector.backbone.depth=1", "train.seed=0"]


def numeric_leaves(node, prefix=""):
    """Dotted keys of the int and float values of ``node`` (interpolations resolved), bools excluded."""
    items = node.items() if isinstance(node, DictConfig) else enumerate(node)
    for key, _ in items:
        path = f"{prefix}{key}"
        if isinstance(node, DictConfig) and key == "_target_":
            continue
        value = node[key]
        if isinstance(value, (DictConfig, ListConfig)):
            yield from numeric_leaves(value, f"{path}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield path, value


def _candidates(value):
    if isinstance(value, int):
        return [value * 2 or 1, value // 2, value + 1, value - 1]
    return [value * 2 or 0.1, value / 2, value + 0.1]


def _scalars(obj, private=False, plain=(int, float, str, tuple, list, dict, type(None))):
    """The plain-valued attributes of ``obj`` (a module's settings, a hook's periods, ...)."""
    return {
        k: repr(v) for k, v in vars(obj).items() if isinstance(v, plain) and (private or not k.startswith("_"))
    }


def _augmentation_state(aug):
    """Every setting of an augmentation, recursively (their repr elides long values)."""
    if isinstance(aug, T.AugmentationList):
        return [_augmentation_state(a) for a in aug.augs]
    return {k: _augmentation_state(v) if isinstance(v, T.Augmentation) else repr(v) for k, v in vars(aug).items()}


def fingerprint(cfg, output_dir, model=None):
    """
    What the training command builds from ``cfg``, reduced to comparable values; ``model``, when given,
    stands for ``cfg.model`` (a config whose model part is unchanged).
    """
    cfg = cfg.copy()
    train_tool.resolve_schedule(cfg)
    if model is None:
        torch.manual_seed(0)
        model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    box = {"bbox": [0, 0, 4, 4], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
    dataset = [{"file_name": "unused.jpg", "height": 8, "width": 8, "image_id": i, "annotations": [box]} for i in range(4)]
    cfg.dataloader.train.dataset = cfg.dataloader.test.dataset = dataset
    train_loader = instantiate(cfg.dataloader.train)
    test_loader = instantiate(cfg.dataloader.test)
    trainer = YOLOSTrainer(
        model, lambda *_: [], optimizer, amp_dtype=cfg.train.amp.dtype,
        clip_grad_norm=cfg.train.clip_grad_norm, seed=cfg.train.seed,
    )
    cfg.train.output_dir = str(output_dir)
    hooks = [h for h in train_tool.build_hooks(cfg, model, YOLOSCheckpointer(model, str(output_dir))) if h]
    schedule = instantiate(cfg.lr_multiplier)
    augmentations = [
        _augmentation_state(T.AugmentationList(instantiate(cfg.dataloader[split].mapper.augmentations)))
        for split in ("train", "test")
    ]
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "buffers": {k: v.clone() for k, v in model.named_buffers()},
        "modules": {name: _scalars(m) for name, m in model.named_modules()},
        "optimizer": [{k: v for k, v in g.items() if k != "params"} | {"n": len(g["params"])} for g in optimizer.param_groups],
        "schedule": [schedule(w / 100) for w in range(101)] + [_scalars(schedule)],
        "loaders": [(loader.batch_size, loader.num_workers) for loader in (train_loader, test_loader)],
        "augmentations": augmentations,
        "trainer": (trainer.clip_grad_norm, trainer.seed, repr(trainer.amp_dtype), cfg.train.max_iter),
        # Numbers only (a hook's lists hold objects), less the clock readings of IterationTimer.
        "hooks": [
            {k: v for k, v in _scalars(h, True, (int, float, str, type(None))).items() if "time" not in k}
            for h in hooks
        ],
        "ema": [_scalars(h.ema) for h in hooks if isinstance(h, EMAHook)],
    }


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    return a == b


def _model_differs(cfg, base_cfg) -> bool:
    return OmegaConf.to_container(cfg.model, resolve=True) != OmegaConf.to_container(base_cfg.model, resolve=True)


def dead_keys(config_file, overrides=()):
    """The overrides of numeric keys of ``config_file`` (with ``overrides``) that change nothing built."""
    base_cfg = load_config(config_file, [*BASE, *overrides])
    torch.manual_seed(0)
    base_model = instantiate(base_cfg.model)
    base = fingerprint(base_cfg, tmp_dir := tempfile.mkdtemp(), base_model)
    dead = []
    for key, value in numeric_leaves(base_cfg):
        if key in DOCUMENTED_NO_EFFECT:
            continue
        for candidate in _candidates(value):
            if candidate == value:
                continue
            try:
                cfg = load_config(config_file, [*BASE, *overrides, f"{key}={candidate}"])
            except ConfigError as e:
                if "has no effect while" in str(e):  # refused at start, saying why: not ignored
                    break
                continue  # a value out of range: try another
            try:
                model = None if _model_differs(cfg, base_cfg) else base_model
                changed = fingerprint(cfg, tmp_dir, model)
            except (ValueError, RuntimeError):  # e.g. a width the heads do not divide: try another value
                continue
            if _equal(changed, base):
                dead.append(f"{key}={candidate} (default {value})")
            break
        else:
            raise AssertionError(f"no value tried for {key} builds: {_candidates(value)}")
    return dead


# YOLOS-Ti and -S hold every key the paper configs have (-S-200ep, -S-dWr and -B change values only).
@pytest.mark.parametrize(
    "variant", [v if v in ("yolos_ti", "yolos_s") else pytest.param(v, marks=pytest.mark.slow) for v in VARIANTS]
)
def test_every_numeric_key_changes_what_is_built(variant):
    assert dead_keys(config_path(variant)) == []


def test_every_ema_key_changes_what_is_built_when_enabled():
    assert dead_keys(config_path("yolos_ti"), ["train.ema.enabled=True"]) == []


def test_a_key_nothing_reads_is_found(tmp_path):
    config = tmp_path / "with_unread_key.py"
    config.write_text(
        "from detectron2.config import LazyConfig\n"
        f"globals().update(LazyConfig.load({config_path('yolos_ti')!r}))\n"
        "train.unread = 3\n"
    )
    assert dead_keys(str(config)) == ["train.unread=6 (default 3)"]
