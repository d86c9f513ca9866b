"""
``python -m benchmarks gpu``, the GPU measurements in one command, in its CPU dry run: every
section's code runs on one-block models (the sections that need CUDA say why they are skipped),
and the table it writes holds every row.
"""
import io
import math
from types import SimpleNamespace

import pytest
import torch
from detectron2.config import instantiate

from benchmarks import __main__ as benchmark_command
from benchmarks import gpu
from conftest import REPO
from yolos_d2.config import load_config
from yolos_d2.inference.precision import bf16_is_fast

# Largest differences from yolos_d2's float32 outputs (logits below 0.1, boxes in [0, 1]), as in
# tests/test_benchmark_tools.py: float32 in another order of operations, about 170 steps of float32 below 1;
FP32_TOLERANCE = 1e-5
# bfloat16 keeps 8 significant bits: four steps of at most 2**-8 below 1.
BF16_TOLERANCE = 4 * 2**-8
# The same weights loaded twice on the same CPU run the same kernels: the same outputs, up to a
# few steps of float32 relative to the largest value, should a kernel split its work otherwise.
SAME_CPU_TOLERANCE = 16 * torch.finfo(torch.float32).eps


def finite_positive(value) -> bool:
    """Whether ``value`` is a float, finite and above zero: a time, rate, size or ratio that was measured."""
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def dry_run():
    """The rows of the dry run on the CPU, by section."""
    # On one thread: about a second; on torch's two threads beside other busy processes, each
    # small op waits on the other thread, which makes it ten times as long.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = list(gpu.run(gpu.DRY_RUN, "cpu"))
    finally:
        torch.set_num_threads(threads)
    by_section = {section: [row for row in rows if row.section == section] for section in gpu.SECTIONS}
    assert sum(map(len, by_section.values())) == len(rows)
    return by_section


def cpu_dtypes():
    """The precisions the dry run measures on this CPU: bfloat16 where it is native and fast (AVX512-BF16, AMX)."""
    return ["fp32", "bf16"] if bf16_is_fast("cpu") else ["fp32"]


def assert_skipped_precisions(rows, section):
    """float16 (CUDA only) and, on a CPU without native bfloat16, bfloat16: a row each saying why."""
    skipped = {row.variant: row.outcome for row in rows if row.outcome}
    expected = {"fp16"} | ({"bf16"} if "bf16" not in cpu_dtypes() else set())
    assert set(skipped) == expected, section
    assert skipped["fp16"].startswith("skipped: float16 autocast is measured on CUDA GPUs only")
    assert all(row.value is None for row in rows if row.outcome)


def test_dry_run_fails_in_no_section(dry_run):
    assert all(rows for rows in dry_run.values())
    failed = [row.outcome for rows in dry_run.values() for row in rows if row.outcome.startswith("failed")]
    assert not failed


def test_dry_run_compares_the_converted_model_on_both_devices(dry_run):
    rows = dry_run["CUDA vs CPU"]
    assert [(row.case, row.measure) for row in rows] == [
        ("yolos_ti.py 64x96 x1", gpu.LOGITS_DIFFERENCE),
        ("yolos_ti.py 64x96 x1", gpu.BOXES_DIFFERENCE),
    ]
    for row in rows:  # the CPU against itself
        assert row.variant == "yolos-convert --format hf, cpu vs cpu, fp32"
        assert row.value >= 0 and 0 <= row.vs_reference <= SAME_CPU_TOLERANCE


def test_dry_run_times_each_implementation_in_each_precision_the_cpu_runs(dry_run):
    rows = dry_run["inference"]
    assert_skipped_precisions(rows, "inference")
    measured = {(row.case, row.variant, row.measure): row for row in rows if not row.outcome}
    expected = set()
    for case in ("yolos_ti.py 64x96 x1", "yolos_ti.py 64x96 x2"):
        for dtype in cpu_dtypes():
            for name in ("yolos_d2", "transformers sdpa"):
                expected.add((case, f"{name} {dtype}", gpu.MS_PER_IMAGE))
                if (name, dtype) != ("yolos_d2", "fp32"):
                    expected.add((case, f"{name} {dtype}", gpu.DIFFERENCE_FROM_FP32))
    assert set(measured) == expected
    for (case, variant, measure), row in measured.items():
        assert row.reference == f"transformers sdpa {variant.split()[-1]}"
        if measure == gpu.MS_PER_IMAGE:
            assert finite_positive(row.value) and finite_positive(row.vs_fp32) and finite_positive(row.vs_reference)
            if variant.endswith("fp32"):
                assert row.vs_fp32 == 1
            if variant.startswith("transformers"):
                assert row.vs_reference == 1
        elif variant.endswith("fp32"):  # transformers against yolos_d2, both in float32
            assert row.value < FP32_TOLERANCE and row.vs_reference == 1
        else:  # > 0: autocast took effect
            assert 0 < row.value < BF16_TOLERANCE and finite_positive(row.vs_reference)


def test_dry_run_trains_in_each_precision_without_and_with_checkpointing(dry_run):
    rows = dry_run["training"]
    assert_skipped_precisions(rows, "training")
    measured = [row for row in rows if not row.outcome]
    assert [(row.variant, row.measure) for row in measured] == [
        (f"{dtype}, checkpointing {checkpointing}", measure)
        for dtype in cpu_dtypes()
        for checkpointing in ("off", "on")
        for measure in (gpu.STEPS_PER_SECOND, gpu.PEAK_MIB)
    ]
    for row in measured:
        assert row.case == "yolos_ti.py 64x64 x1"
        assert finite_positive(row.value) and finite_positive(row.vs_fp32) and finite_positive(row.vs_reference)
        assert row.reference == f"checkpointing off, {row.variant.split(',')[0]}"
        if row.variant.startswith("fp32"):
            assert row.vs_fp32 == 1
        if row.variant.endswith("off"):
            assert row.vs_reference == 1


def test_dry_run_skips_the_two_processes_saying_why(dry_run):
    (row,) = dry_run["2 processes"]
    assert row.outcome == "skipped: NCCL runs between CUDA GPUs, not on cpu" and row.value is None


def cells(line: str):
    """The cells of a Markdown table's line, stripped."""
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_writes_the_line_and_one_table_of_every_row(dry_run, tmp_path):
    rows = [row for section_rows in dry_run.values() for row in section_rows]
    out, log = io.StringIO(), io.StringIO()
    output = tmp_path / "gpu.md"
    assert gpu.report(iter(rows), "the first line", str(output), out, log) == rows

    for text in (output.read_text(), out.getvalue()):  # the file (padded), standard output (each row as it came)
        first_line, blank, header, separator, *table = text.splitlines()
        assert (first_line, blank, cells(header)) == ("the first line", "", gpu.HEADER)
        assert set(separator) == {"|", "-"} and [cells(line) for line in table] == list(map(gpu.format_row, rows))
    for row in rows:
        value = gpu.format_row(row)[4]
        if row.outcome:
            assert value == row.outcome
        else:
            assert float(value) == pytest.approx(row.value, rel=0.01, abs=0.5)  # as rounded in the table
    assert [line.split(":")[0] for line in log.getvalue().splitlines()] == [*gpu.SECTIONS, "all sections"]


def test_a_failing_section_gives_a_row_and_the_next_runs(monkeypatch):
    def fail(plan, device):
        yield gpu.Row("inference", "a case", "yolos_d2 fp32", gpu.MS_PER_IMAGE, 1.0)
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setitem(gpu.SECTIONS, "inference", fail)
    rows = list(gpu.run(gpu.DRY_RUN, "cpu", sections=["inference", "2 processes"]))
    assert [row.section for row in rows] == ["inference", "inference", "2 processes"]
    assert rows[0].value == 1.0
    assert rows[1].outcome == "failed: RuntimeError: CUDA out of memory." and rows[1].value is None
    assert rows[2].outcome.startswith("skipped: ")


def test_the_command_writes_its_table_and_fails_after_a_failed_section(monkeypatch, tmp_path, capsys):
    rows = [
        gpu.Row("inference", "a case", "yolos_d2 fp32", gpu.MS_PER_IMAGE, 2.5, 1.0, 0.5, "transformers sdpa fp32"),
        gpu.Row("training", "-", "-", "-", outcome="failed: RuntimeError: no"),
    ]
    monkeypatch.setattr(gpu, "run", lambda plan, device: iter(rows))
    output = tmp_path / "new folder" / "gpu.md"
    with pytest.raises(SystemExit) as exit_info:
        benchmark_command.main(["gpu", "--device", "cpu", "--dry-run", "--output", str(output)])
    assert exit_info.value.code == 1
    first_line, _, _, _, measured, failed = output.read_text().splitlines()
    assert first_line.startswith("cpu: ") and f"torch {torch.__version__}" in first_line
    assert "| 2.50 " in measured and "| 1.00 " in measured and "| 0.50 " in measured
    assert "failed: RuntimeError: no" in failed
    assert capsys.readouterr().out.splitlines()[0] == first_line


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--device", "cpu"], "--dry-run"),  # the full sizes on a CPU: an hour
        (["--device", "cpu", "--dry-run", "--output", REPO], "--output"),  # a folder
    ],
)
def test_the_command_refuses_before_measuring(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark_command.main(["gpu", *argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("python -m benchmarks gpu: error: ") and named in error, error


@pytest.mark.slow  # starts 2 processes (spawned, each importing torch and detectron2): half a minute
def test_two_processes_time_ddp_steps_and_an_all_reduce_of_the_gradients(monkeypatch):
    """The 2-process section over gloo on the CPU: the code that runs over NCCL on 2 GPUs."""
    monkeypatch.setattr(gpu, "two_process_skip", lambda device: None)
    rows = list(gpu.run(gpu.DRY_RUN, "cpu", sections=["2 processes"]))
    cfg = load_config(gpu.DRY_RUN.training[0].split(":")[0], gpu.DRY_RUN.overrides)
    parameters = sum(p.numel() for p in instantiate(cfg.model).parameters() if p.requires_grad)
    assert [(row.variant, row.measure) for row in rows] == [
        ("1 process", gpu.STEPS_PER_SECOND),
        ("1 process", gpu.PEAK_MIB),
        ("2 processes, DDP", gpu.STEPS_PER_SECOND),
        ("2 processes, DDP", gpu.PEAK_MIB),
        (f"all-reduce of {parameters / 1e6:.1f}M float32 gradients", gpu.MS),
    ]
    assert all(row.case == "yolos_ti.py 64x64 x1 per process, fp32, gloo" for row in rows)
    assert rows[0].vs_reference == 1 and rows[1].vs_reference == 1
    assert all(finite_positive(row.value) and finite_positive(row.vs_reference) for row in rows)


@pytest.mark.parametrize("device, selected", [("cuda", []), ("cuda:1", [1])])
def test_the_command_on_a_gpu_host_names_the_gpu_and_selects_a_numbered_one(device, selected, monkeypatch, tmp_path):
    """A GPU host stood for by monkeypatched ``torch.cuda`` functions (as in tests/test_gpu_paths.py)."""
    properties = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: properties)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 27, 3))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    set_devices = []
    monkeypatch.setattr(torch.cuda, "set_device", set_devices.append)
    monkeypatch.setattr(gpu, "run", lambda plan, device: iter([]))
    output = tmp_path / "gpu.md"
    benchmark_command.main(["gpu", "--device", device, "--output", str(output)])
    assert set_devices == selected
    first_line = output.read_text().splitlines()[0]
    assert first_line.startswith(f"{device}: NVIDIA H100 80GB HBM3 (80 GiB, compute capability 9.0); torch ")
    assert f"CUDA {torch.version.cuda}, cuDNN 91002, NCCL 2.27.3; 2 GPUs visible" in first_line
    assert "timed rounds: 10, after 3 of warm-up" in first_line  # the full plan
