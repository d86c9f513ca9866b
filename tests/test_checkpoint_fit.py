"""Checkpoints that do not fit the model fail, naming what does not fit, before any tensor is loaded."""
import logging
import pickle

import numpy as np
import pytest
import torch

from conftest import build_model, config_path, run_train_net
from yolos_d2.checkpoint import YOLOSCheckpointer, compact_key_names, save_checkpoint_atomic
from yolos_d2.config import load_config
from yolos_d2.inference import build_inference_model
from yolos_d2.tools.export import main as export_main


def depth(n):
    return [f"model.detector.backbone.depth={n}"]


def save(state, path, **extra):
    save_checkpoint_atomic({"model": state, **extra}, str(path))
    return str(path)


def assert_unchanged(model, before):
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} was loaded although the load failed"


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_shallower_checkpoint_names_the_missing_blocks(tmp_path):
    """Depth-1 weights into a depth-4 model: blocks 1, 2 and 3 are missing, named as one range."""
    path = save(build_model("yolos_ti", depth(1)).state_dict(), tmp_path / "depth1.pth")
    model = build_model("yolos_ti", depth(4))
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        YOLOSCheckpointer(model).load(path)
    message = str(info.value)
    assert "depth1.pth" in message
    assert "depth 1" in message and "depth 4" in message
    # 12 tensors per block (2 norms, qkv, proj, 2 MLP layers; weight and bias each) x 3 blocks.
    assert "missing from the checkpoint (36 tensors): detector.backbone.blocks.1-3\n" in message
    assert "not in the model" not in message
    assert "train.init_checkpoint_strict=False" in message
    assert_unchanged(model, before)


def test_deeper_checkpoint_names_the_blocks_the_model_lacks(tmp_path):
    path = save(build_model("yolos_ti", depth(3)).state_dict(), tmp_path / "depth3.pth")
    with pytest.raises(ValueError, match=r"not in the model \(24 tensors\): detector\.backbone\.blocks\.1-2\n"):
        YOLOSCheckpointer(build_model("yolos_ti", depth(1))).load(path)


def test_checkpoint_of_another_model_matches_nothing(tmp_path):
    path = save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "linear.pth")
    model = build_model("yolos_ti", depth(1))
    num_tensors = len(model.state_dict())
    with pytest.raises(ValueError) as info:
        YOLOSCheckpointer(model).load(path)
    message = str(info.value)
    assert "None of its 2 tensors has the name of one of the model's" in message
    assert f"missing from the checkpoint ({num_tensors} tensors): detector\n" in message
    assert "not in the model (2 tensors): bias, weight\n" in message
    assert "It holds no YOLOS backbone" in message


def test_partial_load_on_purpose_loads_what_matches_and_logs_the_rest(tmp_path, caplog):
    source = build_model("yolos_ti", depth(1))
    path = save(source.state_dict(), tmp_path / "depth1.pth")
    model = build_model("yolos_ti", depth(2))
    block1 = model.detector.backbone.blocks[1].attn.qkv.weight.clone()
    with caplog.at_level(logging.WARNING):
        YOLOSCheckpointer(model, strict=False).load(path)
    assert "detector.backbone.blocks.1" in caplog.text and "keep the model's initialisation" in caplog.text
    assert torch.equal(model.detector.backbone.blocks[1].attn.qkv.weight, block1)
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_keys_a_converter_documents_as_new_may_be_missing(tmp_path, caplog):
    source = build_model("yolos_ti", depth(1))
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("detector.bbox_embed.")}
    documented = save(state, tmp_path / "converted.pth", new_keys=["detector.bbox_embed"])
    undocumented = save(state, tmp_path / "partial.pth")

    with pytest.raises(ValueError, match=r"missing from the checkpoint \(6 tensors\): detector\.bbox_embed\n"):
        YOLOSCheckpointer(build_model("yolos_ti", depth(1))).load(undocumented)
    model = build_model("yolos_ti", depth(1))
    with caplog.at_level(logging.INFO):
        YOLOSCheckpointer(model).load(documented)
    assert "converted.pth" in caplog.text and "detector.bbox_embed" in caplog.text
    assert torch.equal(model.detector.backbone.cls_token, source.detector.backbone.cls_token)


@pytest.mark.parametrize("strict", [True, False])
def test_non_finite_weights_are_refused_naming_the_tensors(tmp_path, strict):
    state = dict(build_model("yolos_ti", depth(1)).state_dict())
    state["detector.backbone.blocks.0.attn.qkv.weight"] = state["detector.backbone.blocks.0.attn.qkv.weight"].clone()
    state["detector.backbone.blocks.0.attn.qkv.weight"][0, :3] = float("nan")
    state["detector.class_embed.layers.2.bias"] = torch.full((81,), float("inf"))
    path = save(state, tmp_path / "diverged.pth")
    model = build_model("yolos_ti", depth(1))
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        YOLOSCheckpointer(model, strict=strict).load(path)
    message = str(info.value)
    assert "diverged.pth" in message and "infinite or NaN values in 2 tensors" in message
    assert "detector.backbone.blocks.0.attn.qkv.weight (3 NaN)" in message
    assert "detector.class_embed.layers.2.bias (81 inf)" in message
    assert_unchanged(model, before)


def _corrupt_safetensors(path):
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{notjson")


@pytest.mark.parametrize(
    "name, write, what",
    [
        ("corrupt.safetensors", _corrupt_safetensors, "safetensors"),
        ("list.pth", lambda p: torch.save([torch.zeros(2)], p), "it holds a list"),
        ("tensor.pth", lambda p: torch.save(torch.zeros(2), p), "it holds a Tensor"),
        ("nested.pth", lambda p: torch.save({"state_dict": {"w": torch.zeros(2)}}, p), "'state_dict' holds a dict"),
        ("bad_model.pth", lambda p: torch.save({"model": {"w": [1.0]}}, p), "'w' holds a list"),
    ],
)
def test_unreadable_payloads_are_named(tmp_path, name, write, what):
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError) as info:
        YOLOSCheckpointer(build_model("yolos_ti", depth(1))).load(str(path))
    message = str(info.value)
    assert f"{str(path)!r} is not a readable checkpoint" in message and what in message


def test_model_zoo_pickles_of_numpy_arrays_are_checked_too(tmp_path):
    state = {k: v.numpy() for k, v in build_model("yolos_ti", depth(1)).state_dict().items()}
    state["detector.backbone.cls_token"] = np.full_like(state["detector.backbone.cls_token"], np.nan)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"model": state, "__author__": "test"}))
    with pytest.raises(ValueError, match=r"detector\.backbone\.cls_token \(192 NaN\)"):
        YOLOSCheckpointer(build_model("yolos_ti", depth(1))).load(str(path))


def test_export_refuses_a_checkpoint_that_does_not_fit(tmp_path, capsys):
    path = save(build_model("yolos_ti", depth(1)).state_dict(), tmp_path / "depth1.pth")
    output = tmp_path / "model.pt"
    with pytest.raises(SystemExit):
        export_main(["--config-file", config_path("yolos_ti"), "--output", str(output), "--format", "torchscript",
                     *depth(2), f"train.init_checkpoint={path}"])
    assert "missing from the checkpoint (12 tensors): detector.backbone.blocks.1" in capsys.readouterr().err
    assert not output.exists()


def test_tools_refuse_a_checkpoint_that_does_not_fit(tmp_path):
    path = save(build_model("yolos_ti", depth(1)).state_dict(), tmp_path / "depth1.pth")
    cfg = load_config(config_path("yolos_ti"), [*depth(3), f"train.init_checkpoint={path}", "train.device=cpu"])
    with pytest.raises(ValueError) as info:
        build_inference_model(cfg)
    assert "missing from the checkpoint (24 tensors): detector.backbone.blocks.1-2\n" in str(info.value)


@pytest.mark.parametrize("args", [[], ["--eval-only"]], ids=["training", "eval-only"])
def test_train_net_refuses_weights_that_do_not_fit(tiny_config, tmp_path, args):  # noqa: F811
    """The tiny config's model has 2 blocks; weights of a 1-block model lack block 1."""
    path = save(build_model("quickstart", depth(1)).state_dict(), tmp_path / "depth1.pth")
    status, log = run_train_net(tiny_config, str(tmp_path / "out"), *args, f"train.init_checkpoint={path}")
    assert status != 0
    assert "ValueError: Checkpoint" in log
    assert "missing from the checkpoint (12 tensors): detector.backbone.blocks.1\n" in log
    assert "Starting training" not in log and "Start inference" not in log


@pytest.mark.parametrize(
    "keys, universe, names",
    [
        (["a.blocks.1.w", "a.blocks.1.b", "a.blocks.2.w", "a.blocks.2.b"],
         ["a.blocks.0.w", "a.blocks.0.b", "a.blocks.1.w", "a.blocks.1.b", "a.blocks.2.w", "a.blocks.2.b"],
         ["a.blocks.1-2"]),
        (["a.blocks.1.w", "a.blocks.3.w", "a.blocks.3.b"],
         ["a.blocks.1.w", "a.blocks.1.b", "a.blocks.3.w", "a.blocks.3.b"],
         ["a.blocks.1.w", "a.blocks.3"]),
        ([f"a.blocks.{i}.{p}" for i in (10, 9, 2) for p in "wb"],
         [f"a.blocks.{i}.{p}" for i in range(11) for p in "wb"],
         ["a.blocks.2", "a.blocks.9-10"]),
        (["x.w", "y.w", "y.b"], ["x.w", "y.w", "y.b"], ["x.w", "y"]),
    ],
)
def test_compact_key_names(keys, universe, names):
    assert compact_key_names(keys, universe) == names
