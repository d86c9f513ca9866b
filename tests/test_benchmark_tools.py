"""
The benchmarks' measuring tools (analytic FLOP counts, interleaved timing, peak memory) and the
rows each benchmark's ``run`` returns.
"""
import json
import math
from functools import partial

import pytest
import torch
from detectron2.config import instantiate
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import __main__ as benchmark_command
from benchmarks import (
    batch_prediction,
    coco_scale,
    data_loading,
    evaluation,
    inference,
    nonfinite_check,
    onnx_pipeline,
    precision,
    threads,
    timing,
    training,
)
from benchmarks.huggingface import random_huggingface_model
from benchmarks.memory import peak_allocated_bytes
from benchmarks.timing import Timing, time_interleaved, timings
from conftest import config_path, synthetic_splits
from yolos_d2.config import load_config, prepare_config
from yolos_d2.data import register_coco_dataset
from yolos_d2.data.synthetic_shapes import SyntheticShapesSpec
from yolos_d2.data.validation import FILE_CHECK_THREADS
from yolos_d2.export import YOLOSPipeline
from yolos_d2.inference import build_inference_model
from yolos_d2.inference.precision import bf16_is_fast
from yolos_d2.modeling.flops import detector_flops
from yolos_d2.utils.table import format_table

# Largest differences from yolos_d2's float32 outputs (logits below 0.1, boxes and scores in [0, 1]):
# - float32 in another order of operations (transformers' eager or SDPA attention, other matrix
#   blocking): the spacing of float32 below 1 is at most 6e-8, and through 12 blocks a few such
#   steps build up; 1e-5 is about 170 of them;
FP32_TOLERANCE = 1e-5
# - bfloat16 keeps 8 significant bits: values below 1 are rounded to steps of at most 2**-8; four such steps;
BF16_TOLERANCE = 4 * 2**-8
# - int8 rounds each Linear's weights and inputs to steps of 1/127 of their largest magnitude: up
#   to about one such step at outputs below 1 per block, 12 blocks: 12/127 < 0.1.
INT8_TOLERANCE = 0.1


def finite_positive(value: float) -> bool:
    """Whether ``value`` is a float, finite and above zero: a time, rate or ratio that was measured."""
    return isinstance(value, float) and math.isfinite(value) and value > 0


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


def test_timings_give_each_row_its_ratio_to_the_reference_and_its_columns():
    rows = timings({"a": 2.0, "b": 0.5}, "a")
    assert rows == [Timing("a", 2.0, 1.0), Timing("b", 0.5, 0.25)]
    rows = timings({"a": 2.0, "b": 0.5}, "b", evaluation.EvaluationTiming, ap={"a": 0.1, "b": 0.2})
    assert rows == [evaluation.EvaluationTiming("a", 2.0, 4.0, 0.1), evaluation.EvaluationTiming("b", 0.5, 1.0, 0.2)]


def test_inference_benchmark_compares_every_implementation_in_each_precision():
    case = f"{config_path('yolos_ti')}:64x96:2"
    results = list(inference.run([case], "cpu", repeats=1, warmup=0, onnxruntime=False))
    # bfloat16 rows where bf16_is_fast: native bfloat16 instructions (AVX512-BF16 or AMX) that
    # multiply no slower than float32; none elsewhere (AVX2 CPUs).
    assert [result.dtype for result in results] == (["fp32", "bf16"] if bf16_is_fast("cpu") else ["fp32"])
    fp32, *bf16 = results
    difference = {row.name: row.difference for row in fp32.rows}
    assert set(difference) == {"yolos_d2", "transformers eager", "transformers sdpa", "yolos_d2 int8 (PyTorch)"}
    assert difference["yolos_d2"] == 0  # the reference itself
    assert difference["transformers eager"] < FP32_TOLERANCE and difference["transformers sdpa"] < FP32_TOLERANCE
    assert 0 < difference["yolos_d2 int8 (PyTorch)"] < INT8_TOLERANCE
    for result in bf16:
        names = {"yolos_d2", "transformers eager", "transformers sdpa", "yolos_d2, attention in fp32"}
        assert {row.name for row in result.rows} == names
        assert all(0 < row.difference < BF16_TOLERANCE for row in result.rows)  # > 0: autocast took effect
        # Attention in float32 computes differently from the fused kernel's bfloat16 path.
        assert result.row("yolos_d2, attention in fp32").difference != result.row("yolos_d2").difference
    for result in results:
        assert result.row("yolos_d2").ratio == 1
        assert all(finite_positive(row.seconds) and finite_positive(row.ratio) for row in result.rows)
        assert finite_positive(result.gemm_flops_per_second) and finite_positive(result.attention_share)
        # Its last block runs for the [DET] tokens only: fewer FLOPs than the full sequence's.
        assert 0 < result.executed_flops < result.flops


def test_training_benchmark_times_steps_in_each_precision_without_and_with_checkpointing_and_the_ema():
    cfg = prepare_config(config_path("yolos_ti"), ["model.detector.backbone.depth=2"])
    result = training.run(cfg, batch=2, size=(64, 64), repeats=1)
    # bfloat16 rows where the CPU computes it natively (AVX512-BF16 or AMX), not elsewhere.
    dtypes = ["fp32", "bf16"] if bf16_is_fast("cpu") else ["fp32"]
    assert [step.name for step in result.steps] == [f"{d}, checkpointing {c}" for d in dtypes for c in ("off", "on")]
    assert result.steps[0].ratio == 1 and result.steps[0].memory_ratio == 1
    assert all(step.peak_bytes > 0 and finite_positive(step.memory_ratio) for step in result.steps)
    assert all(finite_positive(timed.seconds) and finite_positive(timed.ratio) for timed in [*result.steps, result.ema])


def test_nonfinite_check_benchmark_times_the_check_and_the_steps():
    cfg = prepare_config(config_path("yolos_ti"), ["model.detector.backbone.depth=1"])
    rows = nonfinite_check.run(cfg, batch=1, size=(64, 64), repeats=1)
    assert [row.name for row in rows] == ["check alone", "training step", "step without check"]
    assert rows[1].ratio == 1 and all(finite_positive(row.seconds) and finite_positive(row.ratio) for row in rows)


def test_evaluation_benchmark_times_both_evaluators_to_the_same_numbers():
    result = evaluation.run(images=6, categories=3, gts=7.0, dets=10, repeats=1, seed=0)
    assert [row.name for row in result.rows] == ["pycocotools COCOeval", "faster-coco-eval COCOeval_faster"]
    # Summary numbers (at most 1) equal to the last bits: faster-coco-eval leaves out the np.spacing(1)
    # pycocotools adds to its precisions' denominator (bound as in tests/test_coco_evaluation.py).
    assert result.detections == 6 * 10 and result.max_stats_difference <= 34 * torch.finfo(torch.float64).eps
    assert result.rows[0].ap == pytest.approx(result.rows[1].ap, rel=34 * torch.finfo(torch.float64).eps, abs=0)
    assert result.rows[0].ratio == 1 and all(finite_positive(row.ratio) for row in result.rows)


def test_coco_scale_benchmark_writes_the_counts_asked_for(tmp_path):
    path = str(tmp_path / "instances.json")
    file_names = coco_scale.write_coco_json(path, images=50, boxes=300, categories=5, seed=1)
    with open(path) as f:
        coco = json.load(f)
    assert [image["file_name"] for image in coco["images"]] == file_names and len(set(file_names)) == 50
    assert sorted(a["id"] for a in coco["annotations"]) == list(range(1, 301))
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5]
    sides = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
    for anno in coco["annotations"]:
        x, y, w, h = anno["bbox"]
        width, height = sides[anno["image_id"]]
        assert 0 <= x and x + w <= width + 0.01 and 0 <= y and y + h <= height + 0.01  # rounded to 2 decimals
        (polygon,) = anno["segmentation"]
        assert len(polygon) % 2 == 0 and 12 <= len(polygon) <= 76
        assert x - 0.01 <= min(polygon[0::2]) and max(polygon[0::2]) <= x + w + 0.01


def test_coco_scale_benchmark_measures_each_part_in_one_run():
    result = coco_scale.run(images=6, boxes=20, categories=3, eval_images=3, dets=4, lookup_seconds=0.001, seed=0)
    assert result.same_dataset_dicts and result.json_bytes > 0
    threads = f"{FILE_CHECK_THREADS} threads"
    assert [(row.part, row.name) for row in result.rows] == [
        ("loading", "detectron2 load_coco_json"),
        ("loading", "yolos_d2 load_checked_coco_json"),
        ("image check, local files", "1 thread"),
        ("image check, local files", threads),
        ("image check, 1 ms per file", "1 thread"),
        ("image check, 1 ms per file", threads),
        ("evaluation", "pycocotools COCOeval"),
        ("evaluation", "faster_coco_eval COCOeval_faster"),
    ]
    assert [row.ratio for row in result.rows[::2]] == [1.0] * 4
    assert all(finite_positive(row.seconds) and finite_positive(row.ratio) for row in result.rows)
    measured = [row for row in result.rows if row.part in ("loading", "evaluation")]
    assert all(isinstance(row.peak_bytes, int) and row.peak_bytes >= 0 for row in measured)
    assert all(row.peak_bytes is None and row.memory_ratio is None for row in result.rows if row not in measured)


def test_batch_prediction_benchmark_masks_the_padding_exactly():
    # YOLOS-S has mid-layer position embeddings: the masked forward gives each image its own too.
    small = [
        "model.detector.backbone.depth=2",
        "model.detector.backbone.num_det_tokens=10",
        "model.detector.backbone.init_pe_size=[64,96]",
        "model.detector.backbone.mid_pe_size=[64,96]",
        "dataloader.test.mapper.augmentations.eval_size=64",
    ]
    predictor = batch_prediction.random_predictor(load_config(config_path("yolos_s"), small))
    result = batch_prediction.run(predictor, [(48, 64), (64, 48), (60, 80), (30, 100)], batch_sizes=[1, 2], repeats=1)
    assert result.resized_sizes == [(32, 96), (64, 80), (80, 64)] and result.padded_size == (80, 96)
    assert [way.name for way in result.ways] == ["one at a time", "grouped by size", "padded and masked"]
    # Other batch shapes sum in other orders: scores in [0, 1] (float32 spacing at most 6e-8) and
    # boxes of up to 100 px (spacing 7.6e-6 px) move by a few steps; the bounds are over 100 steps.
    for way in result.ways:
        assert way.score_difference < 1e-5 and way.box_difference < 1e-3, way.name
    assert [(same.name, same.images) for same in result.lists] == [("1 x 48x64", 1), ("2 x 48x64", 2)]
    assert result.ways[1].ratio == 1 and result.lists[0].ratio == 1 and result.lists[0].rate_ratio == 1
    timed = [*result.ways, *result.lists]
    assert all(finite_positive(row.ratio) for row in timed) and all(finite_positive(s.rate_ratio) for s in result.lists)


@pytest.mark.slow  # an ONNX export: tests/test_export.py checks the same agreement in the default run
def test_onnx_pipeline_benchmark_compares_and_times_both():
    small = [
        "model.detector.backbone.depth=1",
        "model.detector.backbone.init_pe_size=[64,96]",
        "dataloader.test.mapper.augmentations.eval_size=64",
    ]
    cfg = load_config(config_path("yolos_ti"), small)
    predictor = batch_prediction.random_predictor(cfg)
    pipeline = YOLOSPipeline(predictor.model, instantiate(cfg.dataloader.test.mapper.augmentations))
    result = onnx_pipeline.run(predictor, pipeline, [(90, 300), (300, 90)], top_n=10, time_size=(48, 64), repeats=1)
    assert [(row.image, row.resized) for row in result.agreement] == [((90, 300), (32, 96)), ((300, 90), (96, 32))]
    # The pipeline resizes inside the graph as PIL does but for a few pixels one level apart
    # (resize_like_pil), and runs onnxruntime's kernels: a slightly different input, not only
    # float32 rounding. Measured: scores within 4e-7, boxes within 2e-3 px; bounds of 1e-3 and half a pixel.
    for row in result.agreement:
        assert row.score_difference < 1e-3 and row.box_difference < 0.5
        assert row.top_score_difference <= row.score_difference and row.top_box_difference <= row.box_difference
    assert [row.name for row in result.timings] == [onnx_pipeline.PREDICTOR, "onnxruntime pipeline"]
    assert result.timings[0].ratio == 1 and all(finite_positive(row.ratio) for row in result.timings)


def test_data_loading_benchmark_rates_and_workers_by_hand():
    (row,) = data_loading.run([config_path("yolos_ti")], images=12, step_seconds=[0.5, 0.01])
    assert row.config == "yolos_ti.py" and finite_positive(row.train_rate) and finite_positive(row.test_rate)
    # YOLOS-Ti: 16 images over 8 GPUs, 2 per GPU.
    assert row.images_per_gpu == 2
    assert row.workers == [math.ceil(2 / (0.5 * row.train_rate)), math.ceil(2 / (0.01 * row.train_rate))]


def test_threads_benchmark_times_each_count_alone_and_beside_a_competitor():
    cfg = prepare_config(config_path("quickstart"), ["model.detector.backbone.depth=1"])
    default_threads = torch.get_num_threads()
    result = threads.run(cfg, batch=2, size=(64, 64), repeats=1, competitors=1)
    assert torch.get_num_threads() == default_threads == result.default_threads
    assert [(row.competitors, row.name) for row in result.rows] == [
        (c, name) for c in (0, 1) for name in ("torch default", "1", "auto")
    ]
    assert [choice.competitors for choice in result.auto] == [0, 1]
    chosen = [choice.threads for choice in result.auto]
    assert [row.threads for row in result.rows] == [default_threads, 1, chosen[0], default_threads, 1, chosen[1]]
    alone, beside = result.rows[:3], result.rows[3:]
    assert all(row.ratio == 1 for row in alone)
    for row in beside:  # no ratio for a count not timed alone
        assert finite_positive(row.ratio) if row.threads in {a.threads for a in alone} else row.ratio is None


def test_precision_benchmark_evaluates_each_precision(tmp_path, capsys):
    splits = synthetic_splits(str(tmp_path), {"val": SyntheticShapesSpec(6, seed=5)})
    name = register_coco_dataset("precision_benchmark_val", *splits["val"])
    overrides = ["model.detector.backbone.depth=1", f"dataloader.test.dataset.names={name}"]
    cfg = prepare_config(config_path("quickstart"), overrides)
    torch.manual_seed(0)
    result = precision.run(cfg, build_inference_model(cfg, require_weights=False), batch_sizes=[1, 8], repeats=1)
    rows = {row.name: row for row in result.rows}
    # bfloat16 where bf16_is_fast (AVX512-BF16 or AMX CPUs), not elsewhere.
    expected = ["fp32", "fp32, onnxruntime", "int8, PyTorch", "int8, onnxruntime"]
    assert list(rows) == expected + (["bf16"] if bf16_is_fast("cpu") else [])
    assert (rows["fp32"].ap_change, rows["fp32"].ap50_change, rows["fp32"].score_difference) == (0, 0, 0)
    assert rows["fp32, onnxruntime"].score_difference < 1e-4
    assert rows["fp32"].time_ratios == {1: 1, 8: 1}  # batch 8 of the 6 images: cycled
    assert all(min(row.forward_seconds.values()) > 0 and row.time_ratios.keys() == {1, 8} for row in rows.values())
    for name in ("int8, PyTorch", "int8, onnxruntime"):
        assert 0 < rows[name].score_difference < INT8_TOLERANCE
    if "bf16" in rows:
        assert 0 < rows["bf16"].score_difference < BF16_TOLERANCE
    assert result.detections == 30  # 6 images x 5 [DET] tokens
    assert "Average Precision" not in capsys.readouterr().out  # pycocotools' summaries: the table has the AP


@pytest.mark.parametrize(
    "argv, named",
    [
        (["nonfinite-check", "--batch", "0"], "--batch"),
        (["training", "--size", "512x0"], "--size"),
        (["threads", "--repeats", "1.5"], "--repeats"),
        (["inference", "--cases", "configs/yolos_ti.py:512x688:0"], "--cases"),
        (["evaluation", "--gts", "0"], "--gts"),
        (["batch-prediction", "--sizes", "480x640", "640"], "--sizes"),
        (["data-loading", "--step-seconds", "0.1", "0"], "--step-seconds"),
        (["data-loading", "--configs", "configs/missing.py"], "configs/missing.py"),
        (["coco-scale", "--lookup-ms", "0"], "--lookup-ms"),
    ],
)
def test_benchmark_refuses_a_bad_argument_naming_it(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark_command.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"python -m benchmarks {argv[0]}: error: ") and named in error, error
