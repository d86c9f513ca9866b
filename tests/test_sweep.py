"""The speed/accuracy sweep: each size evaluated as --eval-only does, a row per size and precision, checks at start."""
import re
import types

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from conftest import config_path, copypaste_ap, run_train_net, synthetic_splits, write_quickstart_variant
from yolos_d2.checkpoint import save_checkpoint_atomic
from yolos_d2.config import prepare_config
from yolos_d2.data import DETRResizeShortestEdge
from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec
from yolos_d2.inference import build_inference_model
from yolos_d2.inference.precision import InferencePrecision, bf16_is_fast
from yolos_d2.inference.sweep import TimedForward, run_sweep, with_eval_size
from yolos_d2.tools import sweep

NUM_IMAGES, IMAGE_SIZE, EVAL_SIZE, OTHER_SIZE = 12, 64, 48, 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """
    A 1-block quick-start model with random weights saved as a checkpoint, and a config whose test
    dataset is 12 generated 64x64 images resized to 48x48 at test time (detr_test_augmentations).
    With these weights some boxes match the ground truth: an AP above 0. A second dataset of 3
    images, "sweep_small", is registered beside it.
    """
    root = tmp_path_factory.mktemp("sweep")
    splits = synthetic_splits(
        str(root),
        {
            "sweep_tiny": SyntheticShapesSpec(NUM_IMAGES, seed=21, image_size=IMAGE_SIZE),
            "sweep_small": SyntheticShapesSpec(3, seed=22, image_size=IMAGE_SIZE),
        },
    )
    config = write_quickstart_variant(
        root / "tiny.py",
        f"""
        model.detector.backbone.depth = 1
        dataloader.test.dataset.names = register_coco_dataset("sweep_tiny", *{splits["sweep_tiny"]!r})
        dataloader.test.mapper.augmentations = L(detr_test_augmentations)(eval_size={EVAL_SIZE})
        register_coco_dataset("sweep_small", *{splits["sweep_small"]!r})
        train.device = "cpu"
        """,
    )
    torch.manual_seed(2)
    weights = str(root / "model.pth")
    save_checkpoint_atomic({"model": instantiate(LazyConfig.load(config).model).state_dict()}, weights)
    return types.SimpleNamespace(config=config, weights=weights, root=root)


def native_precisions_here():
    """The precisions the sweep runs on this CPU: fp32, bf16 where it is native, int8."""
    return ["fp32", *(["bf16"] if bf16_is_fast("cpu") else []), "int8"]


@pytest.mark.slow
def test_sweep_at_the_configs_eval_size_gives_the_eval_only_ap(tiny, tmp_path):
    _, log = run_train_net(tiny.config, str(tmp_path / "eval"), "--eval-only", "--weights", tiny.weights, check=True)
    eval_only_ap = copypaste_ap(log)[0]
    assert eval_only_ap > 0  # else equal APs would say nothing

    cfg = prepare_config(tiny.config, weights=tiny.weights)
    points = run_sweep(cfg, build_inference_model(cfg), [OTHER_SIZE, EVAL_SIZE], ["fp32"])
    (at_eval_size,) = [p for p in points if p.eval_size == EVAL_SIZE]
    assert at_eval_size.ap == pytest.approx(eval_only_ap, abs=1e-4)


def test_sweep_writes_a_row_per_size_and_precision_and_a_plot(tiny, tmp_path, capsys):
    output = tmp_path / "sweep"
    args = ["--config-file", tiny.config, "--weights", tiny.weights, "--sizes", str(OTHER_SIZE), str(EVAL_SIZE)]
    assert sweep.main([*args, "--output", str(output), "dataloader.test.dataset.names=sweep_small"]) == 0
    table = (output / "speed_accuracy.md").read_text()
    assert table.strip() in capsys.readouterr().out
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    expected = [(size, p) for p in native_precisions_here() for size in (str(OTHER_SIZE), str(EVAL_SIZE))]
    assert [(row[0], row[1]) for row in rows] == expected
    for size, precision, ap, ap50, milliseconds, deploy in rows:
        assert 0 <= float(ap) <= float(ap50) <= 100 and float(milliseconds) > 0
        assert deploy == f"`dataloader.test.mapper.augmentations.eval_size={size} --precision {precision}`"
    with open(output / "speed_accuracy.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_with_eval_size_sets_or_adds_the_test_resize():
    for name in ("yolos_ti", "quickstart"):  # detr_test_augmentations(eval_size=800); no test-time resize
        cfg = prepare_config(config_path(name))
        before = repr(cfg.dataloader.test.mapper.augmentations)
        (resize,) = instantiate(with_eval_size(cfg, 384).dataloader.test.mapper.augmentations)
        assert isinstance(resize, DETRResizeShortestEdge)
        assert (resize.short_edge_length, resize.max_size, resize.size_multiple) == ((384,), 639, 16)
        assert repr(cfg.dataloader.test.mapper.augmentations) == before  # the config given is not changed


def test_with_eval_size_refuses_a_size_below_a_patch_and_other_test_augmentations():
    cfg = prepare_config(config_path("quickstart"))
    with pytest.raises(ValueError, match="eval size 8 is below the model's patch size, 16 pixels"):
        with_eval_size(cfg, 8)
    cfg.dataloader.test.mapper.augmentations = cfg.dataloader.train.mapper.augmentations  # a flip
    with pytest.raises(ValueError, match=re.escape("must be detr_test_augmentations (its eval_size is set) or none")):
        with_eval_size(cfg, 64)


@pytest.mark.parametrize(
    "sizes, message",
    [
        (["8", "48"], "eval size 8 is below the model's patch size, 16 pixels"),
        (["48", "32", "48"], "--sizes: 48 given more than once"),
        (["9000"], "--sizes: 9000 above 8192 pixels"),
    ],
)
def test_sweep_refuses_sizes_before_evaluating(tiny, tmp_path, capsys, sizes, message):
    output = tmp_path / "sweep"
    args = ["--config-file", tiny.config, "--weights", tiny.weights, "--output", str(output)]
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([*args, "--sizes", *sizes])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


class Echo(torch.nn.Module):
    """A model that returns its inputs, with a parameter to say its device."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batched_inputs):
        return batched_inputs


def test_timed_forward_times_each_forward_after_the_warm_up_in_the_precisions_context():
    entered = []

    class Context:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc_info):
            return False

    timed = TimedForward(Echo(), InferencePrecision("fp32", Context), warmup=2)
    for batch in ([1], [1, 2], [1], [1, 2, 3]):
        assert timed(batch) == batch
    assert len(entered) == 4
    assert len(timed.seconds_per_image) == 2  # the 3rd and 4th forwards
