"""yolos-model-info: parameters by hand, FLOPs by torch's counter, the input size by the config's resize."""
import pytest
import torch
from detectron2.config import instantiate
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import config_path
from yolos_d2.config import load_config
from yolos_d2.tools import model_info

D, DEPTH, HEADS, K, C = 64, 2, 2, 5, 7
# YOLOS-S (mid-layer position embeddings) made small, evaluated at 64 pixels.
TINY = [
    f"model.detector.backbone.embed_dim={D}",
    f"model.detector.backbone.depth={DEPTH}",
    f"model.detector.backbone.num_heads={HEADS}",
    f"model.detector.backbone.num_det_tokens={K}",
    "model.detector.backbone.init_pe_size=[64,96]",
    "model.detector.backbone.mid_pe_size=[32,48]",
    f"model.detector.num_classes={C}",
    "dataloader.test.mapper.augmentations.eval_size=64",
]


def test_parameters_equal_the_count_by_hand():
    info = model_info.model_info(load_config(config_path("yolos_s"), TINY), (48, 80))
    hidden, patches, init_grid, mid_grid = 4 * D, 3 * 16 * 16, 4 * 6, 2 * 3
    block = (3 * D * D + 3 * D) + (D * D + D) + (D * hidden + hidden) + (hidden * D + D) + 2 * 2 * D
    expected = (
        patches * D + D  # patch embedding
        + D + (1 + init_grid) * D + 2 * K * D  # [CLS], its and the patches' position embeddings, [DET] and theirs
        + (DEPTH - 1) * (1 + mid_grid + K) * D  # mid-layer position embeddings
        + DEPTH * block
        + 2 * D  # final norm
        + 2 * (D * D + D) + D * (C + 1) + C + 1  # class head
        + 2 * (D * D + D) + D * 4 + 4  # box head
    )
    assert (info.embed_dim, info.depth, info.num_heads) == (D, DEPTH, HEADS)
    assert info.parameters == expected


def test_flops_equal_torch_count_of_the_model_on_its_eval_input():
    cfg = load_config(config_path("yolos_s"), TINY)
    info = model_info.model_info(cfg, (48, 80))
    # Shorter side 48 -> 64, longer 80 -> 106, floored to whole 16-pixel patches.
    assert info.input_size == (64, 96)
    detector = instantiate(cfg.model).detector
    # With grad enabled and the math attention, every matrix product is an op torch's counter knows.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        detector(torch.randn(1, 3, *info.input_size))
    assert info.flops == counter.get_total_flops()


def test_command_prints_a_markdown_row_per_config(capsys):
    argv = ["--config-file", config_path("yolos_s"), config_path("quickstart"), *TINY[:-1], "--image-size", "48x80"]
    assert model_info.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| config ") and lines[1].startswith("|---")
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[2:4]]
    assert [row[0] for row in cells] == ["configs/yolos_s.py", "configs/quickstart.py"]
    # YOLOS-S resizes to 800: 48x80 -> 800x1333, floored to 800x1328; the quick start keeps the size.
    assert [row[3] for row in cells] == ["800x1328", "48x80"]
    assert all(row[1] == f"{D}, {DEPTH}, {HEADS}" for row in cells)


def test_command_needs_config_files(capsys):
    with pytest.raises(SystemExit) as exit_info:
        model_info.main([])
    assert exit_info.value.code == 2 and "--config-file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "image_size, message",
    [
        ("abc", "must be HEIGHTxWIDTH in pixels, e.g. 480x640, got 'abc'"),
        ("480", "must be HEIGHTxWIDTH in pixels, e.g. 480x640, got '480'"),
        ("480xabc", "must be a whole number, got 'abc'"),
        ("0x5", "must be at least 1, got 0"),
        ("100000x100000", "must be at most 8192, got 100000"),
    ],
)
def test_command_refuses_image_sizes_out_of_range(capsys, image_size, message):
    with pytest.raises(SystemExit) as exit_info:
        model_info.main(["--config-file", config_path("quickstart"), "--image-size", image_size])
    assert exit_info.value.code == 2
    assert f"argument --image-size: {message}" in capsys.readouterr().err
