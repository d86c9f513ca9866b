"""The exponential moving average of the weights: its arithmetic, its hook, its checkpoints and its config keys."""
import logging
import math

import pytest
import torch
from detectron2.engine import HookBase

from yolos_d2.checkpoint import YOLOSCheckpointer
from yolos_d2.config import ConfigError, load_config
from yolos_d2.engine import EMAHook, WeightEMA, YOLOSTrainer
from yolos_d2.inference import build_inference_model

from conftest import build_model, config_path


class _Regression(torch.nn.Module):
    """A linear layer and an integer buffer, trained on a fixed regression batch."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, batch):
        self.steps += 1
        x, y = batch
        return {"loss": ((self.linear(x) - y) ** 2).mean()}


class _RecordWeights(HookBase):
    def __init__(self, record):
        self.record = record

    def after_step(self):
        self.record.append({k: v.clone() for k, v in self.trainer.model.state_dict().items()})


def test_hook_averages_the_weights_after_each_step_as_computed_by_hand():
    torch.manual_seed(0)
    model = _Regression()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    batch = (torch.randn(4, 3), torch.randn(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    trainer = YOLOSTrainer(model, lambda *_: iter(lambda: batch, None), optimizer, clip_grad_norm=0, seed=0)
    ema = WeightEMA(model, decay=0.9, warmup_iters=2)
    after_step = []
    trainer.register_hooks([EMAHook(ema), _RecordWeights(after_step)])
    trainer.train(0, 3)

    # d_t = 0.9 (1 - e^(-t/2)); ema_t = d_t ema_{t-1} + (1 - d_t) w_t, from ema_0 = w_0.
    for name in ("linear.weight", "linear.bias"):
        expected = start[name]
        for t, weights in enumerate(after_step, start=1):
            d = 0.9 * (1 - math.exp(-t / 2))
            expected = d * expected + (1 - d) * weights[name]
        assert not torch.allclose(expected, after_step[-1][name])
        torch.testing.assert_close(ema.weights[name], expected, rtol=0, atol=1e-6)
    assert ema.weights["steps"].item() == 3 and ema.num_updates == 3


def test_without_warmup_the_decay_is_constant():
    ema = WeightEMA(torch.nn.Linear(1, 1), decay=0.99)
    assert [ema.decay_at(t) for t in (1, 10, 1000)] == [0.99, 0.99, 0.99]


@pytest.mark.parametrize("kwargs", [{"decay": 1.0}, {"decay": -0.1}, {"decay": 0.9, "warmup_iters": -1}])
def test_out_of_range_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="EMA"):
        WeightEMA(torch.nn.Linear(1, 1), **kwargs)


def test_applied_swaps_the_average_in_and_restores_the_trained_weights():
    model = torch.nn.Linear(2, 2)
    ema = WeightEMA(model, decay=0.5)
    ema.reset()
    trained = torch.full_like(model.weight, 3.0)
    with torch.no_grad():
        model.weight.copy_(trained)
    averaged = ema.weights["weight"].clone()
    with ema.applied():
        torch.testing.assert_close(model.weight.detach(), averaged, rtol=0, atol=0)
    torch.testing.assert_close(model.weight.detach(), trained, rtol=0, atol=0)


def _checkpoint_with_ema(tmp_path):
    """A quick-start checkpoint saved with an EMA that differs from its trained weights."""
    model = build_model("quickstart")
    ema = WeightEMA(model, decay=0.5)
    ema.reset()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    checkpointer = YOLOSCheckpointer(model, str(tmp_path), ema=ema)
    checkpointer.save("model_final")
    return str(tmp_path / "model_final.pth"), model.state_dict(), ema.weights


def _inference_weights(path, overrides=()):
    cfg = load_config(config_path("quickstart"), overrides)
    cfg.train.init_checkpoint, cfg.train.device = path, "cpu"
    return build_inference_model(cfg).state_dict()


def test_inference_loads_the_average_unless_the_config_asks_for_the_trained_weights(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path, trained, averaged = _checkpoint_with_ema(tmp_path)
    for overrides, expected in [([], averaged), (["train.eval_with_ema=False"], trained)]:
        loaded = _inference_weights(path, overrides)
        for k, v in expected.items():
            torch.testing.assert_close(loaded[k], v, rtol=0, atol=0, msg=k)
    assert caplog.text.count(f"Loading the EMA of the weights (0 updates) from {path!r}, not its trained weights") == 1


def test_inference_loads_the_trained_weights_of_a_checkpoint_without_an_average(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    model = build_model("quickstart")
    YOLOSCheckpointer(model, str(tmp_path)).save("plain")
    loaded = _inference_weights(str(tmp_path / "plain.pth"))
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert "EMA" not in caplog.text


def _nan_in_the_average(path):
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["ema"]["weights"]["detector.backbone.cls_token"][0, 0, :3] = float("nan")
    torch.save(checkpoint, path)


def test_an_average_holding_nan_is_refused_for_inference_and_when_training_resumes(tmp_path):
    path, _, _ = _checkpoint_with_ema(tmp_path)
    _nan_in_the_average(path)
    expected = (
        f"Checkpoint {path!r} holds infinite or NaN values in its EMA of the weights (under 'ema'), 1 tensor: "
        "detector.backbone.cls_token (3 NaN)."
    )
    with pytest.raises(ValueError) as inference:
        _inference_weights(path)
    model = build_model("quickstart")
    checkpointer = YOLOSCheckpointer(model, str(tmp_path), ema=WeightEMA(model, decay=0.5))
    with pytest.raises(ValueError) as resume:
        checkpointer.resume_or_load("", resume=True)
    assert str(inference.value).startswith(expected) and str(resume.value).startswith(expected)


def test_a_run_resumed_without_an_average_starts_one_with_a_warning(caplog):
    model = _Regression()
    batch = (torch.randn(4, 3), torch.randn(4, 2))
    trainer = YOLOSTrainer(model, lambda *_: iter(lambda: batch, None), torch.optim.SGD(model.parameters(), lr=0.1))
    ema = WeightEMA(model, decay=0.9)
    trainer.register_hooks([EMAHook(ema)])
    with caplog.at_level(logging.WARNING):
        trainer.train(5, 6)
    assert "The checkpoint resumed holds no EMA of the weights" in caplog.text
    assert "the average starts from the weights of iteration 5" in caplog.text
    assert ema.num_updates == 1


def test_ema_keys_need_the_switch_on():
    with pytest.raises(ConfigError, match=r"'train.ema.decay=0.99' has no effect while train.ema.enabled=False"):
        load_config(config_path("yolos_ti"), ["train.ema.decay=0.99"])
    cfg = load_config(config_path("yolos_ti"), ["train.ema.decay=0.99", "train.ema.enabled=True"])
    assert cfg.train.ema.decay == 0.99


def test_update_matches_a_lerp_per_tensor_bit_for_bit():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.BatchNorm1d(7), torch.nn.Linear(7, 2).double())
    ema = WeightEMA(model, decay=0.9, warmup_iters=3)
    ema.reset()
    expected = {k: v.clone() for k, v in ema.weights.items()}
    for update in (1, 2):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        model[1].num_batches_tracked += 1
        ema.update()
        decay = 0.9 * (1 - math.exp(-update / 3))
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                expected[name].lerp_(value, 1 - decay)
            else:
                expected[name].copy_(value)
    for name, average in ema.weights.items():
        assert torch.equal(average, expected[name]), name
    assert ema.weights["1.num_batches_tracked"].item() == 2
