"""Loading checkpoints: wrong variants, unconverted and unreadable files fail clearly."""
import os
import pickle

import pytest
import torch

from conftest import build_model, config_path
from yolos_d2.checkpoint import YOLOSCheckpointer, load_weights_file, save_checkpoint_atomic
from yolos_d2.tools.convert import main as convert_main

SMALL = ["model.detector.backbone.depth=1"]


def test_wrong_variant_names_both_variants_and_the_shape(tmp_path):
    tiny = build_model("yolos_ti", SMALL)
    save_checkpoint_atomic({"model": tiny.state_dict()}, str(tmp_path / "ti.pth"))
    small = build_model("yolos_s", SMALL)
    with pytest.raises(ValueError) as info:
        YOLOSCheckpointer(small).load(str(tmp_path / "ti.pth"))
    message = str(info.value)
    # One block deep, neither is a paper variant: described by width and depth.
    assert message.startswith(
        f"Checkpoint {str(tmp_path / 'ti.pth')!r} holds a custom ViT (embed_dim 192, depth 1) but the model is a "
        "custom ViT (embed_dim 384, depth 1); shapes that differ:\n"
        "  detector.backbone.cls_token: (1, 1, 192) in the checkpoint, (1, 1, 384) in the model\n"
    )


def test_full_depth_variants_are_named(tmp_path):
    tiny = build_model("yolos_ti")
    save_checkpoint_atomic({"model": tiny.state_dict()}, str(tmp_path / "ti.pth"))
    with pytest.raises(ValueError, match=r"holds YOLOS-Ti \(embed_dim 192, depth 12\) but the model is YOLOS-S-dWr"):
        YOLOSCheckpointer(build_model("yolos_s_dwr")).load(str(tmp_path / "ti.pth"))


def test_same_variant_round_trip_is_exact(tmp_path):
    model = build_model("yolos_s", SMALL)
    save_checkpoint_atomic({"model": model.state_dict()}, str(tmp_path / "s.pth"))
    torch.manual_seed(1)
    other = build_model("yolos_s", SMALL)
    torch.nn.init.normal_(other.detector.backbone.det_token)
    YOLOSCheckpointer(other).load(str(tmp_path / "s.pth"))
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name


def test_unconverted_original_checkpoint_asks_for_conversion(tmp_path):
    torch.save({"model": {"backbone.det_token": torch.zeros(1, 100, 192)}}, tmp_path / "orig.pth")
    with pytest.raises(ValueError, match=r"original YOLOS checkpoint.*--format yolos"):
        YOLOSCheckpointer(build_model("yolos_ti", SMALL)).load(str(tmp_path / "orig.pth"))


def test_garbage_file_is_reported_by_name(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"broken\.pth.* not a readable checkpoint"):
        load_weights_file(str(path))


def test_atomic_save_leaves_previous_file_when_pickling_fails(tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint_atomic({"model": {"w": torch.ones(2)}}, str(path))
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint_atomic({"model": {"w": lambda: None}}, str(path))
    assert torch.equal(load_weights_file(str(path))["model"]["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["model.pth"]


def test_convert_cli_reports_bad_input(tmp_path, caplog):
    assert convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "o.pth"), "--format", "yolos"]) == 1
    assert "missing.pth" in caplog.text and "does not exist" in caplog.text
    (tmp_path / "hf").mkdir()
    assert convert_main([str(tmp_path / "hf"), str(tmp_path / "o.pth"), "--format", "hf"]) == 1
    assert "no config.json" in caplog.text
    torch.save({"model": {"foo": torch.zeros(1)}}, tmp_path / "foo.pth")
    assert convert_main([str(tmp_path / "foo.pth"), str(tmp_path / "o.pth"), "--format", "deit",
                         "--config-file", config_path("yolos_ti")]) == 1
    assert "is not a DeiT checkpoint: it has no pos_embed" in caplog.text
    with pytest.raises(SystemExit):
        convert_main([str(tmp_path / "foo.pth"), str(tmp_path / "o.pth"), "--format", "deit"])
    with pytest.raises(SystemExit):
        convert_main([str(tmp_path / "foo.pth"), str(tmp_path / "o.pth"), "--format", "yolos", "a.b=1"])
    with pytest.raises(SystemExit):
        convert_main([str(tmp_path / "foo.pth"), str(tmp_path / "o.pth"), "--format", "yolos", "--config-file", "nope.py"])
    assert not (tmp_path / "o.pth").exists()


def test_missing_and_unexpected_keys_are_reported_by_name(tmp_path, caplog):
    model = build_model("yolos_ti", SMALL)
    state = dict(model.state_dict())
    del state["detector.bbox_embed.layers.2.bias"]
    state["detector.extra_head.weight"] = torch.zeros(3)
    save_checkpoint_atomic({"model": state}, str(tmp_path / "partial.pth"))
    with pytest.raises(ValueError) as info:
        YOLOSCheckpointer(build_model("yolos_ti", SMALL)).load(str(tmp_path / "partial.pth"))
    message = str(info.value)
    assert "missing from the checkpoint (1 tensor): detector.bbox_embed.layers.2.bias\n" in message
    assert "not in the model (1 tensor): detector.extra_head.weight\n" in message
    with caplog.at_level("INFO"):
        YOLOSCheckpointer(build_model("yolos_ti", SMALL), strict=False).load(str(tmp_path / "partial.pth"))
    assert "detector.bbox_embed.layers.2.bias" in caplog.text
    assert "detector.extra_head.weight" in caplog.text
