"""Bad config values end train_net.py at start, naming the key, the value and what is allowed."""
import os
import runpy
import sys

import pytest
import torch

from conftest import REPO, config_path
from yolos_d2.config import ConfigError, check_config, check_launch, load_config

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

# (config, overrides, the start of the message). YOLOS-Ti's recipe is 300 epochs at 16 images per
# iteration, with lr 5e-5 down to 1e-7; the quick start warms up over 100 iterations.
BAD_VALUES = [
    ("yolos_ti", ["train.max_iter=abc"], "train.max_iter='abc': must be an integer >= 1"),
    (
        "yolos_ti",
        ["dataloader.train.total_batch_size=abc"],
        "dataloader.train.total_batch_size='abc': must be an integer >= 1",
    ),
    (
        "yolos_ti",
        ["dataloader.train.total_batch_size=0"],
        "dataloader.train.total_batch_size=0: must be an integer >= 1",
    ),
    ("yolos_ti", ["train.max_iter=0"], "train.max_iter=0: must be an integer >= 1"),
    ("yolos_ti", ["train.max_iter=2.5"], "train.max_iter=2.5: must be an integer >= 1"),
    ("yolos_ti", ["train.checkpointer.period=0"], "train.checkpointer.period=0: must be an integer >= 1"),
    (
        "yolos_ti",
        ["train.checkpointer.max_to_keep=0"],
        "train.checkpointer.max_to_keep=0: must be None or an integer >= 1",
    ),
    ("yolos_ti", ["train.log_period=0"], "train.log_period=0: must be an integer >= 1"),
    ("yolos_ti", ["train.eval_period=-1"], "train.eval_period=-1: must be an integer >= 0"),
    ("yolos_ti", ["optimizer.lr=-1"], "optimizer.lr=-1: must be a number > 0"),
    ("yolos_ti", ["optimizer.lr=abc"], "optimizer.lr='abc': must be a number > 0"),
    (
        "yolos_ti",
        ["optimizer.lr=1e-8"],
        "lr_multiplier.min_lr=1e-07: must be a number > 0 and at most optimizer.lr=1e-08",
    ),
    ("yolos_ti", ["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1: must be a number >= 0"),
    ("yolos_ti", ["train.clip_grad_norm=-1"], "train.clip_grad_norm=-1: must be a number >= 0"),
    (
        "yolos_ti",
        ["train.amp.dtype=float8"],
        "train.amp.dtype='float8': must be one of None, 'auto', 'float16', 'bfloat16' (None is written null in an override)",
    ),
    (
        "quickstart",
        ["train.max_iter=50"],
        "lr_multiplier.warmup_iters=200: must be an integer from 0 to lr_multiplier.max_iter=50",
    ),
    (
        "yolos_ti",
        ["lr_multiplier.warmup_epochs=301"],
        "lr_multiplier.warmup_epochs=301: must be an integer from 0 to lr_multiplier.epochs=300",
    ),
    (
        "yolos_ti",
        ["train.schedule.epochs=abc"],
        "train.max_iter=${yolos_d2.epochs_to_iters:${train.schedule.epochs},${train.schedule.epoch_size},"
        "${dataloader.train.total_batch_size}} cannot be computed: ValueError raised while resolving "
        "interpolation: epochs must be an integer > 0, got 'abc'",
    ),
    ("yolos_ti", ["train.device=gpu"], "train.device='gpu': not a device"),
    ("yolos_ti", ["train.seed=1.5"], "train.seed=1.5: must be an integer, -1 (drawn at random) or from 0 to 2**64 - 1"),
    ("yolos_ti", ["train.seed=-2"], "train.seed=-2: must be an integer, -1"),
    ("yolos_ti", ["dataloader.train.num_workers=-1"], "dataloader.train.num_workers=-1: must be an integer >= 0"),
    ("yolos_ti", ["dataloader.test.num_workers=-1"], "dataloader.test.num_workers=-1: must be an integer >= 0"),
    ("yolos_ti", ["optimizer.eps=-1"], "optimizer.eps=-1: must be a number > 0"),
    ("yolos_ti", ["optimizer.betas=[2,3]"], "optimizer.betas=[2, 3]: must be two numbers in [0, 1)"),
    ("yolos_ti", ["optimizer.betas=[0.9]"], "optimizer.betas=[0.9]: must be two numbers in [0, 1)"),
    ("yolos_ti", ["model.criterion.eos_coef=-1"], "model.criterion.eos_coef=-1: must be a number in (0, 1]"),
    (
        "yolos_ti",
        ["model.criterion.loss_weights.loss_giou=-2"],
        "model.criterion.loss_weights.loss_giou=-2: must be a number >= 0",
    ),
    (
        "yolos_ti",
        ["+model.criterion.loss_weights.loss_mask=1"],
        "model.criterion: SetCriterion: unknown loss_weights key(s) ['loss_mask']",
    ),
    (
        "yolos_ti",
        ["model.criterion.matcher.cost_bbox=-5"],
        "model.criterion.matcher.cost_bbox=-5: must be a number >= 0",
    ),
    (
        "yolos_ti",
        [f"model.criterion.matcher.cost_{name}=0" for name in ("class", "bbox", "giou")],
        "model.criterion: HungarianMatcher: cost_class, cost_bbox and cost_giou cannot all be 0",
    ),
    ("yolos_ti", ["model.detector.num_classes=0"], "model.detector.num_classes=0: must be an integer >= 1"),
    ("yolos_ti", ["model.detector.backbone.depth=0"], "model.detector.backbone.depth=0: must be an integer >= 1"),
    (
        "yolos_ti",
        ["model.detector.backbone.num_heads=5"],
        "model.detector.backbone.embed_dim=192 is not divisible by model.detector.backbone.num_heads=5",
    ),
    (
        "yolos_ti",
        ["model.detector.backbone.drop_path_rate=1"],
        "model.detector.backbone.drop_path_rate=1: must be a number in [0, 1)",
    ),
    ("yolos_ti", ["model.pixel_std=[58,0,57]"], "model.pixel_std=[58, 0, 57]: must be three numbers > 0"),
    ("yolos_ti", ["model.clip_boxes=maybe"], "model.clip_boxes='maybe': must be True or False"),
    ("yolos_ti", ["train.allow_tf32=1"], "train.allow_tf32=1: must be True or False"),
    (
        "yolos_ti",
        ["train.schedule.reference_batch_size=0"],
        "train.schedule.reference_batch_size=0: must be an integer >= 1",
    ),
    ("yolos_ti", ["lr_multiplier.warmup_lr=-1"], "lr_multiplier.warmup_lr=-1: must be a number >= 0"),
    ("quickstart", ["lr_multiplier.warmup_factor=0"], "lr_multiplier.warmup_factor=0: must be a number in (0, 1]"),
    (
        "quickstart",
        ["train.prediction_images.num_images=0"],
        "train.prediction_images.num_images=0: must be an integer >= 1",
    ),
    ("quickstart", ["train.prediction_images.scale=0"], "train.prediction_images.scale=0: must be a number > 0"),
    pytest.param(
        "yolos_ti", ["train.device=cuda"], "train.device='cuda': CUDA is not available on this machine", marks=NO_CUDA
    ),
]


@pytest.mark.parametrize("name, overrides, message", BAD_VALUES)
def test_bad_value_is_named(name, overrides, message):
    with pytest.raises(ConfigError) as info:
        check_config(load_config(config_path(name), overrides))
    assert str(info.value).startswith(message)


def test_value_that_cannot_be_computed_names_the_key_its_expression_and_the_error():
    with pytest.raises(ConfigError) as info:
        check_config(load_config(config_path("yolos_ti"), ["train.schedule.epoch_size=abc"]))
    assert str(info.value) == (
        "train.max_iter=${yolos_d2.epochs_to_iters:${train.schedule.epochs},${train.schedule.epoch_size},"
        "${dataloader.train.total_batch_size}} cannot be computed: ValueError raised while resolving interpolation: "
        "epoch_size must be an integer > 0, got 'abc'"
    )


def run_train_net_main(argv, monkeypatch):
    """train_net.py run as a command in this process; returns its SystemExit."""
    monkeypatch.setattr(sys, "argv", ["train_net.py", *argv])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(os.path.join(REPO, "train_net.py"), run_name="__main__")
    return info.value


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("yolos_x", [], "Config file 'configs/yolos_x.py' does not exist"),
        ("yolos_ti", ["train.max_iters=10"], "Unknown config key 'train.max_iters'"),
        *BAD_VALUES,
        ("yolos_ti", ["--num-gpus", "3"], "dataloader.train.total_batch_size=16 is not divisible by the 3 processes"),
        ("yolos_ti", ["--num-gpus", "0"], "--num-gpus 0 --num-machines 1: each must be at least 1"),
        (
            "yolos_ti",
            ["train.device=cpu", "train.allow_tf32=True"],
            "train.allow_tf32=True with train.device='cpu': TF32 is a mode of NVIDIA GPUs, for train.device=cuda "
            "only; set train.allow_tf32=False\n",
        ),
    ],
)
def test_train_net_stops_before_writing_anything(tmp_path, monkeypatch, capsys, name, args, message):
    out = tmp_path / "out"
    config = "configs/yolos_x.py" if name == "yolos_x" else config_path(name)
    exit_ = run_train_net_main(["--config-file", config, *args, f"train.output_dir={out}"], monkeypatch)
    assert exit_.code == 2
    assert f"train_net.py: error: {message}" in capsys.readouterr().err
    assert not out.exists()


def test_unreadable_override_stops_train_net_before_writing_anything(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    override = "model.detector.backbone.init_pe_size=[800,1328"
    argv = ["--config-file", config_path("yolos_ti"), f"train.output_dir={out}", override]
    exit_ = run_train_net_main(argv, monkeypatch)
    assert exit_.code == 2
    assert f"train_net.py: error: Cannot read the override {override!r}" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("output_dir", ["", "null"])
def test_output_dir_must_be_a_path(tmp_path, monkeypatch, capsys, output_dir):
    monkeypatch.chdir(tmp_path)
    argv = ["--config-file", config_path("yolos_ti"), f"train.output_dir={output_dir}"]
    exit_ = run_train_net_main(argv, monkeypatch)
    assert exit_.code == 2
    shown = "''" if output_dir == "" else "None"
    assert f"train_net.py: error: train.output_dir={shown}: must be a non-empty path" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_threads_are_at_most_the_cpus_this_process_may_use():
    cpus = len(os.sched_getaffinity(0))
    check_config(load_config(config_path("yolos_ti"), [f"train.num_threads={cpus}"]))
    with pytest.raises(ConfigError) as info:
        check_config(load_config(config_path("yolos_ti"), [f"train.num_threads={cpus + 1}"]))
    assert str(info.value) == (
        f"train.num_threads={cpus + 1}: must be 'auto' or an integer from 1 to {cpus}, the CPUs this process may use"
    )


def test_batch_must_divide_among_the_processes_of_all_machines(tmp_path, monkeypatch, capsys):
    args = ["--num-gpus", "2", "--num-machines", "3", "--machine-rank", "1", "--dist-url", "tcp://127.0.0.1:1"]
    argv = ["--config-file", config_path("yolos_ti"), *args, f"train.output_dir={tmp_path}"]
    exit_ = run_train_net_main(argv, monkeypatch)
    assert exit_.code == 2
    assert (
        "dataloader.train.total_batch_size=16 is not divisible by the 6 processes (--num-gpus 2 x --num-machines 3): "
        "use a multiple of 6" in capsys.readouterr().err
    )


def test_evaluation_does_not_need_a_divisible_batch():
    cfg = load_config(config_path("yolos_ti"))
    check_launch(cfg, num_gpus_per_machine=3, num_machines=1, training=False)
    with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
        check_launch(cfg, num_gpus_per_machine=3, num_machines=1, training=True)
