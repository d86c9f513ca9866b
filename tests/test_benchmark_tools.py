"""The benchmarks' measuring tools: analytic FLOP counts and interleaved timing."""
import math
from functools import partial

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from _helpers import build_model, config_path, synthetic_splits
from detectron2.config import instantiate
from benchmarks import (
    batch_prediction,
    data_loading,
    inference,
    onnx_pipeline,
    precision,
    threads,
    timing,
    training,
)
from yolos_d2.modeling.flops import detector_flops
from benchmarks.huggingface import random_huggingface_model
from benchmarks.memory import peak_allocated_bytes
from yolos_d2.utils.table import format_table
from benchmarks.timing import time_interleaved
from yolos_d2.config import load_config


def test_flops_equal_torch_count_of_transformers_eager_model():
    overrides = ["model.detector.backbone.depth=2", "model.detector.backbone.init_pe_size=[128,192]"]
    cfg = load_config(config_path("yolos_ti"), overrides)
    peer = random_huggingface_model(cfg.model.detector.backbone)
    peer.set_attn_implementation("eager")  # torch's counter has no formula for CPU flash attention
    cfg.model.detector.num_classes = 91
    backbone = instantiate(cfg.model.detector.backbone)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        peer(pixel_values=torch.randn(1, 3, 96, 160))
    assert detector_flops(backbone, 91, (96, 160)) == counter.get_total_flops()


def test_det_only_last_block_counts_fewer_queries():
    cfg = load_config(config_path("yolos_ti"), ["model.detector.backbone.depth=2"])
    backbone = instantiate(cfg.model.detector.backbone)
    full = detector_flops(backbone, 80, (64, 64))
    det_only = detector_flops(backbone, 80, (64, 64), det_only_last_block=True)
    num_tokens, dim, hidden, queries = 1 + 16 + 100, 192, 768, 100
    skipped = (num_tokens - queries) * (4 * num_tokens * dim + 2 * dim * dim + 4 * dim * hidden)
    assert full - det_only == skipped


def test_interleaved_timing_gives_the_median_of_the_timed_rounds(monkeypatch):
    """On a clock that each call advances by a scripted duration: warm-up rounds left out, then the median."""
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    durations = {"a": [100.0, 1.0, 5.0, 3.0], "b": [100.0, 2.0, 2.0, 8.0]}
    calls = []

    def call(name):
        calls.append(name)
        clock[0] += durations[name].pop(0)

    times = time_interleaved({name: partial(call, name) for name in durations}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert times == {"a": 3.0, "b": 2.0}


def test_format_table_pads_the_columns():
    table = format_table(["name", "ms"], [["a", "1.0"], ["bb", "22.5"]])
    assert table.splitlines()[0] == "| name | ms   |" and table.splitlines()[3] == "| bb   | 22.5 |"


def test_peak_allocated_bytes_follows_live_tensors():
    def allocate():
        a = torch.empty(2**18)  # 1 MiB
        b = torch.empty(2**19)  # 2 MiB: 3 MiB alive
        del a, b
        torch.empty(2**19)  # 2 MiB alone

    assert peak_allocated_bytes(allocate, "cpu") == 3 * 2**20


def test_activation_checkpointing_lowers_peak_training_memory():
    overrides = ["model.detector.backbone.depth=6", "model.detector.backbone.init_pe_size=[256,256]"]
    backbone = instantiate(load_config(config_path("yolos_ti"), overrides).model.detector.backbone)
    images = torch.randn(1, 3, 384, 384)

    def step(use_act_checkpoint):
        backbone.use_act_checkpoint = use_act_checkpoint
        return peak_allocated_bytes(lambda: backbone(images).sum().backward(), "cpu")

    assert step(True) < 0.6 * step(False)


def test_inference_benchmark_prints_every_implementation(capsys):
    inference.main(["--cases", f"{config_path('yolos_ti')}:64x96:2", "--repeats", "1", "--warmup", "0", "--no-onnxruntime"])
    out = capsys.readouterr().out
    rows = {line.split("|")[2].strip(): line.split("|")[3:-1] for line in out.splitlines() if line.startswith("| yolos")}
    difference = {name: float(cells[-1]) for name, cells in rows.items()}
    assert set(difference) == {"yolos_d2", "transformers eager", "transformers sdpa", "yolos_d2 int8 (PyTorch)"}
    assert difference["yolos_d2"] == 0 and max(difference[f"transformers {a}"] for a in ("eager", "sdpa")) < 1e-4
    assert 0 < difference["yolos_d2 int8 (PyTorch)"] < 0.1
    assert all(float(cells[-2]) > 0 for cells in rows.values())  # time / yolos_d2
    attention_share = float(out.split("of every block, in fp32) ")[1].split(", ")[1].split()[0])
    assert 0 < attention_share < 1


def test_training_benchmark_reports_both_settings(capsys):
    args = ["--config-file", config_path("yolos_ti"), "--size", "64x64", "--repeats", "1"]
    training.main(args + ["model.detector.backbone.depth=2"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| off", "| on"))]
    assert len(rows) == 2
    assert 0 < float(out.split("EMA of the weights: ")[1].split(" of a step")[0].split(", ")[1]) < 1


def test_batch_prediction_benchmark_masks_the_padding_exactly(capsys):
    # YOLOS-S has mid-layer position embeddings: the masked forward gives each image its own too.
    small = [
        "model.detector.backbone.depth=2",
        "model.detector.backbone.num_det_tokens=10",
        "model.detector.backbone.init_pe_size=[64,96]",
        "model.detector.backbone.mid_pe_size=[64,96]",
        "dataloader.test.mapper.augmentations.eval_size=64",
    ]
    args = ["--config-file", config_path("yolos_s"), "--sizes", "48x64", "64x48", "60x80", "30x100"]
    batch_prediction.main(args + ["--batch-sizes", "1", "2", "--repeats", "1", *small])
    out = capsys.readouterr().out
    assert "4 images resized to 3 sizes (32x96, 64x80, 80x64); padded to 80x96" in out
    rows = {line.split("|")[1].strip(): line.split("|")[2:] for line in out.splitlines() if line.startswith("| ")}
    for way in ("one at a time", "grouped by size", "padded and masked"):
        score_difference, box_difference = (float(cell) for cell in rows[way][3:5])
        assert score_difference < 1e-5 and box_difference < 1e-3, way
    assert "1 x 48x64" in rows and "2 x 48x64" in rows


@pytest.mark.slow  # an ONNX export: tests/test_export.py checks the same agreement in the default run
def test_onnx_pipeline_benchmark_compares_and_times_both(capsys):
    small = [
        "model.detector.backbone.depth=1",
        "model.detector.backbone.init_pe_size=[64,96]",
        "dataloader.test.mapper.augmentations.eval_size=64",
    ]
    onnx_pipeline.main(["--config-file", config_path("yolos_ti"), "--sizes", "90x300", "300x90", "--time-size", "48x64",
                        "--repeats", "1", *small])
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ")}
    for image, resized in (("90x300", "32x96"), ("300x90", "96x32")):
        assert rows[image][0].strip() == resized
        score_difference, box_difference = (float(cell) for cell in rows[image][3:5])
        assert score_difference < 1e-3 and box_difference < 0.5
    assert "onnxruntime pipeline" in rows and "YOLOSPredictor (PIL, PyTorch)" in rows


def _table(out: str, first_column: str) -> dict:
    """The rows of the printed tables whose first cell starts with ``first_column``: first cell -> other cells."""
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith(f"| {first_column}")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_data_loading_benchmark_rates_and_workers_by_hand(capsys):
    data_loading.main(["--images", "12", "--configs", config_path("yolos_ti"), "--step-seconds", "0.5", "0.01"])
    rates, workers = (_table(part, "yolos_ti") for part in capsys.readouterr().out.split("| config")[1:])
    train_rate = float(rates["yolos_ti.py"][0])
    assert train_rate > 0 and float(rates["yolos_ti.py"][1]) > 0
    # YOLOS-Ti: 16 images over 8 GPUs, 2 per GPU.
    assert workers["yolos_ti.py"] == ["2", str(math.ceil(2 / (0.5 * train_rate))), str(math.ceil(2 / (0.01 * train_rate)))]


def test_threads_benchmark_times_each_count_alone_and_beside_a_competitor(capsys):
    args = ["--batch", "2", "--size", "64x64", "--repeats", "1", "model.detector.backbone.depth=1"]
    threads.main(args)
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith(("| 0 ", "| 1 "))]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        (str(c), label) for c in (0, 1) for label in ("torch default", "1", "auto")
    ]
    assert all(r[4].strip() == "1.00" for r in rows[:3]) and all(float(r[4]) > 0 for r in rows[3:])
    assert "1 competitors: auto chose" in out


def test_precision_benchmark_evaluates_each_precision(tmp_path, capsys):
    from yolos_d2.checkpoint import save_checkpoint_atomic
    from yolos_d2.data import register_coco_dataset
    from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec

    splits = synthetic_splits(str(tmp_path), {"val": SyntheticShapesSpec(6, seed=5)})
    name = register_coco_dataset("precision_benchmark_val", *splits["val"])
    overrides = ["model.detector.backbone.depth=1", f"dataloader.test.dataset.names={name}"]
    weights = str(tmp_path / "random.pth")
    save_checkpoint_atomic({"model": build_model("quickstart", overrides[:1]).state_dict()}, weights)
    precision.main(["--config-file", config_path("quickstart"), "--weights", weights, *overrides])
    out = capsys.readouterr().out
    rows = _table(out, "")
    assert {"fp32", "int8, PyTorch", "int8, onnxruntime"} <= set(rows)
    assert rows["fp32"][3:6] == ["+0.00", "+0.00", "0.0e+00"]
    for name in ("int8, PyTorch", "int8, onnxruntime"):
        assert 0 < float(rows[name][5]) < 0.1
    assert "30 detections" in out  # 6 images x 5 [DET] tokens
