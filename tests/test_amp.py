"""Training autocast: train.amp.dtype="auto" resolved from the hardware, and autocast the CPU would emulate refused."""
import pytest
import torch
import yaml
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

from benchmarks.training import synthetic_batch
from conftest import config_path, run_train_net
from yolos_d2.config import ConfigError, check_launch, load_config
from yolos_d2.engine import amp
from yolos_d2.utils import hardware

AVX2_ONLY = frozenset({"avx", "avx2", "fma"})
AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})


@pytest.fixture
def cpu_with(monkeypatch):
    """Make this CPU report the given flags."""

    def set_flags(flags):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
        monkeypatch.setattr(amp, "cpu_flags", lambda: flags)

    return set_flags


@pytest.mark.parametrize(
    "flags, dtype, message",
    [
        (
            AMX,
            "bfloat16",
            "Training in bfloat16 autocast (train.amp.dtype=auto: this CPU has amx_bf16 and avx512_bf16)",
        ),
        (AVX2_ONLY, None, "Training in float32 (train.amp.dtype=auto: this CPU has no avx512_bf16 or amx_bf16)"),
    ],
)
def test_auto_is_bfloat16_where_the_cpu_computes_it_natively(cpu_with, flags, dtype, message):
    cpu_with(flags)
    assert amp.resolve_amp_dtype("auto", "cpu") == (dtype, message)


@pytest.mark.parametrize("setting", [None, "bfloat16", "float16"])
def test_a_dtype_named_is_kept(cpu_with, setting):
    cpu_with(AVX2_ONLY)
    dtype, message = amp.resolve_amp_dtype(setting, "cuda")
    assert dtype == setting and f"(train.amp.dtype={setting or 'null'})" in message


def test_auto_on_a_gpu_that_emulates_bfloat16_trains_in_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    message = "Training in float32 (train.amp.dtype=auto: cuda:0 emulates bfloat16)"
    assert amp.resolve_amp_dtype("auto", "cuda:0") == (None, message)


@pytest.mark.parametrize(
    "flags, dtype, message",
    [
        (AMX, "float16", "train.amp.dtype='float16' with train.device='cpu': float16 autocast is for CUDA devices"),
        (
            AVX2_ONLY,
            "bfloat16",
            "train.amp.dtype='bfloat16' with train.device='cpu': this CPU has no avx512_bf16 or amx_bf16",
        ),
    ],
)
def test_training_autocast_the_cpu_would_emulate_is_refused_at_start(cpu_with, flags, dtype, message):
    cpu_with(flags)
    cfg = load_config(config_path("quickstart"), [f"train.amp.dtype={dtype}", "train.device=cpu"])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_launch(cfg, 1)
    check_launch(cfg, 1, training=False)  # evaluation runs no autocast


@pytest.mark.parametrize("dtype", ["auto", None, "bfloat16"])
def test_accepted_on_a_cpu_that_computes_bfloat16(cpu_with, dtype):
    cpu_with(AMX)
    check_launch(load_config(config_path("quickstart"), [f"train.amp.dtype={dtype or 'null'}", "train.device=cpu"]), 1)


def test_a_run_records_the_dtype_auto_resolved_to(tiny_config, tmp_path):
    _, output = run_train_net(tiny_config, str(tmp_path), "train.amp.dtype=auto", "train.max_iter=2", check=True)
    expected = "bfloat16" if hardware.cpu_has_native_bf16() else None
    assert amp.resolve_amp_dtype("auto", "cpu")[1] in output
    with open(tmp_path / "config.yaml") as f:
        assert yaml.safe_load(f)["train"]["amp"]["dtype"] == expected


@pytest.mark.skipif(not hardware.cpu_has_native_bf16(), reason="bfloat16 training needs AVX512-BF16 or AMX")
def test_a_bfloat16_training_step_is_within_bfloat16_resolution_of_float32():
    cfg = load_config(config_path("quickstart"), ["model.detector.backbone.depth=2", "train.device=cpu"])
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    batch = synthetic_batch(4, (128, 128), cfg.model.detector.num_classes)

    def losses_and_gradient(autocast: bool):
        model.zero_grad()
        torch.manual_seed(1)  # the same drop paths
        with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses = model(batch)
        sum(losses.values()).backward()
        gradient = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return {k: v.item() for k, v in losses.items()}, gradient

    fp32_losses, fp32_gradient = losses_and_gradient(False)
    bf16_losses, bf16_gradient = losses_and_gradient(True)
    # bfloat16 keeps 8 significant bits. Each loss, a mean over many terms of float32 arithmetic on
    # bfloat16 products, stays within one bfloat16 rounding (2^-8, relatively) of float32's; the
    # gradient, whose smallest entries bfloat16 products round most, keeps its direction.
    for name, value in fp32_losses.items():
        assert bf16_losses[name] == pytest.approx(value, rel=2**-8), name
    cosine = torch.nn.functional.cosine_similarity(bf16_gradient, fp32_gradient, dim=0).item()
    assert cosine > 1 - 2**-5
