"""train_net.py's checks at start and its choices, in this process: nothing is trained."""
import os
import warnings

import pytest
import torch

from conftest import config_path, run_train_net
from yolos_d2.checkpoint import save_checkpoint_atomic
from yolos_d2.config import load_config
from yolos_d2.engine.resume import ResumePoint
from yolos_d2.tools import train

QUICKSTART = config_path("quickstart")


def run_main(capsys, *args):
    """train_net.py's main() on ``args``, which must fail at start with a usage error: its message."""
    with pytest.raises(SystemExit) as info:
        train.main(["--config-file", QUICKSTART, *args])
    assert info.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    return last_line.split(": error: ", 1)[1]


@pytest.mark.parametrize("mode", [[], ["--eval-only"]])
def test_weights_that_do_not_exist_are_refused_before_anything_is_written(tmp_path, capsys, mode):
    out, weights = tmp_path / "out", tmp_path / "yolos_s_d2.pth"
    error = run_main(capsys, *mode, "--weights", str(weights), f"train.output_dir={out}")
    assert error == f"train.init_checkpoint={str(weights)!r}: file not found (--weights sets it)"
    assert not out.exists()


def save_run_checkpoint(folder, trainer=True, ema=None):
    """A checkpoint of iteration 3 tagged as the last of ``folder``: with the trainer's state, and an EMA if given."""
    checkpoint = {"model": {"detector.w": torch.ones(2)}}
    if trainer:
        checkpoint["trainer"] = {"iteration": 3, "num_threads": 2}
    if ema is not None:
        checkpoint["ema"] = {"weights": {"detector.w": ema}, "num_updates": 4}
    os.makedirs(folder, exist_ok=True)
    save_checkpoint_atomic(checkpoint, str(folder / "model_0000003.pth"))
    (folder / "last_checkpoint").write_text("model_0000003.pth")
    return str(folder / "model_0000003.pth")


@pytest.mark.parametrize(
    "checkpoint, overrides, expected",
    [
        ({"trainer": False}, [], "holds no training state (iteration, optimizer), only weights"),
        ({"ema": torch.ones(2)}, [], "holds an EMA of the weights, which this run would drop: resume with train.ema."),
        (
            {"ema": torch.tensor([1.0, float("nan")])},
            ["train.ema.enabled=True"],
            "holds infinite or NaN values in its EMA of the weights (under 'ema'), 1 tensor: detector.w (1 NaN)",
        ),
    ],
)
def test_a_checkpoint_to_resume_that_cannot_be_continued_is_refused(tmp_path, capsys, checkpoint, overrides, expected):
    out = tmp_path / "out"
    path = save_run_checkpoint(out, **checkpoint)
    error = run_main(capsys, "--resume", f"train.output_dir={out}", *overrides)
    assert path in error and expected in error
    assert sorted(os.listdir(out)) == ["last_checkpoint", "model_0000003.pth"]  # the lock released, nothing written


def test_a_resumed_run_takes_the_thread_count_of_its_checkpoint():
    cfg = load_config(QUICKSTART, ["train.seed=0"])
    resume_point = ResumePoint("model_0000003.pth", iteration=3, num_threads=5)
    assert train.resolve_threads(cfg, 1, resume_point) == (5, "recorded in the checkpoint resumed")


def test_eval_only_writes_the_evaluator_files_into_the_output_folder_unless_the_config_names_one():
    cfg = load_config(QUICKSTART, ["train.output_dir=out/run"])
    train.use_default_evaluation_output(cfg)
    assert cfg.dataloader.evaluator.output_dir == os.path.join("out/run", "inference")
    cfg = load_config(QUICKSTART, ["train.output_dir=out/run", "dataloader.evaluator.output_dir=mine"])
    train.use_default_evaluation_output(cfg)
    assert cfg.dataloader.evaluator.output_dir == "mine"


def test_only_ddp_warning_about_gradient_strides_is_silenced():
    cfg = load_config(QUICKSTART, ["train.device=cpu"])
    model = torch.nn.Linear(1, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train.wrap_ddp(cfg, model) is model  # one process: no DDP
        warnings.warn("Grad strides do not match bucket view strides. This may indicate grad was not ...", UserWarning)
        warnings.warn("Another warning", UserWarning)
    assert [str(w.message) for w in caught] == ["Another warning"]


def test_a_class_count_that_is_not_the_datasets_is_one_line_before_any_file(tiny_config, tmp_path):
    out = tmp_path / "out"
    status, log = run_train_net(tiny_config, str(out), "model.detector.num_classes=5")
    assert status == 2
    assert log.strip().splitlines()[-1].endswith(
        "error: Dataset 'tiny_train' has 3 classes (rectangle, ellipse, triangle) but the model predicts 5: "
        "set model.detector.num_classes=3"
    )
    assert "Traceback" not in log and not out.exists()


def test_missing_coco_files_say_where_they_were_looked_for_before_any_file(tmp_path, monkeypatch):
    weights = tmp_path / "weights.pth"
    save_checkpoint_atomic({"model": {}}, str(weights))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    out = tmp_path / "out"
    status, log = run_train_net(config_path("yolos_ti"), str(out), "--eval-only", "--weights", str(weights))
    assert status == 2 and "Traceback" not in log and not out.exists()
    message = log.strip().splitlines()[-1]
    assert "coco/annotations/instances_val2017.json" in message and "DETECTRON2_DATASETS" in message
    assert str(tmp_path / "datasets") in message
