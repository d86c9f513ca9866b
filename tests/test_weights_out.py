"""yolos-convert --to: yolos_d2 checkpoints as transformers folders and original YOLOS checkpoints, and back."""
import logging

import pytest
import torch
from detectron2.data.datasets import register_coco_instances

from conftest import build_model, config_path, max_abs_diff, original_state_dict
from yolos_d2.checkpoint.class_head import coco_class_head_rows
from benchmarks.huggingface import random_huggingface_model
from yolos_d2.checkpoint import YOLOSCheckpointer, load_weights_file
from yolos_d2.config import load_config
from yolos_d2.tools.convert import main as convert_main

# YOLOS-S: mid-layer position embeddings, at init_pe_size as transformers needs them.
SMALL = ["model.detector.backbone.depth=2"]


def _save_ours(model, folder):
    YOLOSCheckpointer(model, save_dir=str(folder)).save("ours")
    return str(folder / "ours.pth")


def _convert(*args):
    assert convert_main([str(a) for a in args]) == 0


def _assert_equal_states(a, b):
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_to_hf_loads_in_transformers_with_the_same_outputs(tmp_path):
    from transformers import YolosForObjectDetection

    model = build_model("yolos_s", SMALL)
    config = ["--config-file", config_path("yolos_s"), *SMALL]
    _convert(_save_ours(model, tmp_path), tmp_path / "hf", "--to", "hf", *config)
    hf_model, info = YolosForObjectDetection.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert (info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]) == (set(), set(), set())
    config = hf_model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (384, 2, 6)
    assert (config.intermediate_size, config.patch_size, list(config.image_size)) == (1536, 16, [512, 864])
    assert config.use_mid_position_embeddings and config.num_detection_tokens == 100
    assert config.layer_norm_eps == 1e-6 and config.qkv_bias
    # coco_2017_val's classes, in detectron2's contiguous order.
    assert config.num_labels == 80 and config.id2label[0] == "person" and config.id2label[79] == "toothbrush"
    assert config.label2id["toothbrush"] == 79
    # An input whose patch grid is neither init_pe_size's nor square.
    images = torch.randn(2, 3, 320, 480)
    with torch.no_grad():
        ours, theirs = model.detector(images), hf_model.eval()(pixel_values=images)
    assert max_abs_diff(ours["pred_logits"], theirs.logits) <= 1e-4
    assert max_abs_diff(ours["pred_boxes"], theirs.pred_boxes) <= 1e-4


def test_ours_to_hf_to_ours_is_bit_identical(tmp_path):
    model = build_model("yolos_s", SMALL)
    config = ["--config-file", config_path("yolos_s"), *SMALL]
    _convert(_save_ours(model, tmp_path), tmp_path / "hf", "--to", "hf", *config)
    _convert(tmp_path / "hf", tmp_path / "back.pth", "--format", "hf", *config)
    _assert_equal_states(load_weights_file(str(tmp_path / "back.pth"))["model"], model.state_dict())


def test_to_yolos_holds_the_original_names_and_coco_ids(tmp_path):
    """
    transformers' weights converted in, then out: the original's key layout as the independent
    table of test_original_checkpoints gives it, the class head over COCO's 92 category ids.
    """
    config = ["--config-file", config_path("yolos_s"), *SMALL]
    hf_model = random_huggingface_model(load_config(config_path("yolos_s"), SMALL).model.detector.backbone)
    hf_model.save_pretrained(tmp_path / "hf")
    _convert(tmp_path / "hf", tmp_path / "ours.pth", "--format", "hf", *config)
    _convert(tmp_path / "ours.pth", tmp_path / "original.pth", "--to", "yolos", *config)

    written = load_weights_file(str(tmp_path / "original.pth"))
    expected = original_state_dict(hf_model)
    assert set(written["model"]) == set(expected)
    head = "class_embed.layers.2."
    for key, value in expected.items():
        if not key.startswith(head):
            assert torch.equal(written["model"][key], value), key
    rows = torch.tensor(coco_class_head_rows())
    for kind in ("weight", "bias"):
        assert torch.equal(written["model"][head + kind][rows], expected[head + kind][rows])
    unused = sorted(set(range(92)) - set(coco_class_head_rows()))
    assert len(unused) == 11
    assert torch.equal(written["model"][head + "weight"][unused], torch.zeros(11, 384))
    assert torch.equal(written["model"][head + "bias"][unused], torch.full((11,), -1e4))
    args = written["args"]
    assert (args.init_pe_size, args.mid_pe_size, args.det_token_num) == ([512, 864], [512, 864], 100)


def test_ours_to_yolos_to_ours_is_bit_identical(tmp_path):
    """YOLOS-Ti: no mid-layer position embeddings; its 800x1328 init_pe_size comes back from the args."""
    overrides = ["model.detector.backbone.depth=1"]
    config = ["--config-file", config_path("yolos_ti"), *overrides]
    model = build_model("yolos_ti", overrides)
    _convert(_save_ours(model, tmp_path), tmp_path / "original.pth", "--to", "yolos", *config)
    args = load_weights_file(str(tmp_path / "original.pth"))["args"]
    assert (args.init_pe_size, args.mid_pe_size) == ([800, 1328], None)
    # Without the config: the grid the args give is recorded and the class head mapped back.
    _convert(tmp_path / "original.pth", tmp_path / "back.pth", "--format", "yolos")
    back = load_weights_file(str(tmp_path / "back.pth"))
    _assert_equal_states(back["model"], model.state_dict())
    assert back["position_embedding_grids"] == {"detector.backbone.pos_embed": [50, 83]}


def test_keep_class_ids_writes_the_head_as_it_is(tmp_path):
    overrides = ["model.detector.backbone.depth=1"]
    model = build_model("yolos_ti", overrides)
    _convert(_save_ours(model, tmp_path), tmp_path / "original.pth", "--to", "yolos", "--keep-class-ids",
             "--config-file", config_path("yolos_ti"), *overrides)
    written = load_weights_file(str(tmp_path / "original.pth"))["model"]
    assert torch.equal(written["class_embed.layers.2.weight"], model.detector.class_embed.layers[2].weight)


def test_class_names_fall_back_to_numbered_ones(tmp_path, caplog):
    register_coco_instances("weights_out_missing_json", {}, str(tmp_path / "missing.json"), str(tmp_path))
    overrides = [*SMALL, "model.detector.num_classes=3", "dataloader.test.dataset.names=weights_out_missing_json"]
    model = build_model("yolos_s", overrides)
    with caplog.at_level(logging.INFO, logger="yolos_d2.tools.convert"):
        _convert(_save_ours(model, tmp_path), tmp_path / "hf", "--to", "hf", "--config-file", config_path("yolos_s"),
                 *overrides)
    assert "naming the classes class_0 ... class_2" in caplog.text
    from transformers import YolosConfig

    assert YolosConfig.from_pretrained(tmp_path / "hf").id2label == {0: "class_0", 1: "class_1", 2: "class_2"}


def test_to_hf_refuses_mid_pe_size_other_than_init_pe_size(tmp_path, caplog):
    overrides = [*SMALL, "model.detector.backbone.mid_pe_size=[256,256]"]
    src = _save_ours(build_model("yolos_s", overrides), tmp_path)
    config = ["--config-file", config_path("yolos_s"), *overrides]
    assert convert_main([src, str(tmp_path / "hf"), "--to", "hf", *config]) == 1
    assert "transformers' YOLOS needs mid_pe_size == init_pe_size" in caplog.text
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("to", ["hf", "yolos"])
def test_to_needs_a_config_and_a_checkpoint_that_fits(tmp_path, to, capsys):
    src = _save_ours(build_model("yolos_ti", ["model.detector.backbone.depth=1"]), tmp_path)
    with pytest.raises(SystemExit):
        convert_main([src, str(tmp_path / "out"), "--to", to])
    assert "needs --config-file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert_main([src, str(tmp_path / "out"), "--to", to, "--config-file", config_path("yolos_ti"),
                      "model.detector.backbone.depth=2"])
    assert "missing from the checkpoint (12 tensors): detector.backbone.blocks.1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
