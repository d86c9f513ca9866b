"""Checkpoints of another init_pe_size or mid_pe_size load with their position embeddings resized."""
import logging

import pytest
import torch
import torch.nn.functional as F

from conftest import build_model, config_path, max_abs_diff
from benchmarks.huggingface import random_huggingface_model
from yolos_d2.checkpoint import YOLOSCheckpointer, load_weights_file, save_checkpoint_atomic
from yolos_d2.config import load_config
from yolos_d2.tools.convert import main as convert_main

TI = ["model.detector.backbone.depth=1"]  # init_pe_size 800x1328: a 50x83 grid
TI_512 = [*TI, "model.detector.backbone.init_pe_size=[512,864]"]  # 32x54
S = ["model.detector.backbone.depth=2"]  # init and mid 512x864: 32x54
S_800 = [*S, "model.detector.backbone.init_pe_size=[800,1344]", "model.detector.backbone.mid_pe_size=[800,1344]"]


def bicubic(pos_embed, grid, new_grid, num_det_tokens=0):
    """
    (N, 1 + G + K, D) -> (N, 1 + G' + K, D) by hand: the patch entries, on a ``grid`` (rows, cols),
    interpolated bicubically to ``new_grid``; [CLS] and the K [DET] entries kept.
    """
    num_tokens, dim = pos_embed.shape[-2:]
    patches = pos_embed[:, 1 : num_tokens - num_det_tokens].reshape(-1, *grid, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(patches, size=new_grid, mode="bicubic", align_corners=False, antialias=False)
    resized = resized.permute(0, 2, 3, 1).reshape(-1, new_grid[0] * new_grid[1], dim)
    return torch.cat([pos_embed[:, :1], resized, pos_embed[:, num_tokens - num_det_tokens :]], dim=1)


def save_ours(model, folder):
    YOLOSCheckpointer(model, save_dir=str(folder)).save("ours")
    return str(folder / "ours.pth")


def test_tiny_at_800x1328_loads_into_512x864_as_the_converter_resizes_it(tmp_path, caplog):
    source = build_model("yolos_ti", TI)
    checkpoint = save_ours(source, tmp_path)
    assert load_weights_file(checkpoint)["position_embedding_grids"] == {"detector.backbone.pos_embed": [50, 83]}
    model = build_model("yolos_ti", TI_512)
    with caplog.at_level(logging.INFO, logger="yolos_d2.checkpoint"):
        YOLOSCheckpointer(model).load(checkpoint)
    assert caplog.text.count("resized") == 1
    assert "resized detector.backbone.pos_embed from a 50x83 to a 32x54 patch grid" in caplog.text

    pos = model.detector.backbone.pos_embed.detach()
    assert pos.shape == (1, 1 + 32 * 54, 192)
    assert max_abs_diff(pos, bicubic(source.detector.backbone.pos_embed.detach(), (50, 83), (32, 54))) <= 1e-6
    for name, value in source.state_dict().items():
        if name != "detector.backbone.pos_embed":
            assert torch.equal(model.state_dict()[name], value), name

    # The converter resizes an original-format file of the same weights to the same tensor.
    config = ["--config-file", config_path("yolos_ti")]
    assert convert_main([checkpoint, str(tmp_path / "original.pth"), "--to", "yolos", *config, *TI]) == 0
    assert convert_main([str(tmp_path / "original.pth"), str(tmp_path / "converted.pth"), "--format", "yolos",
                         *config, *TI_512]) == 0
    converted = load_weights_file(str(tmp_path / "converted.pth"))
    assert torch.equal(converted["model"]["detector.backbone.pos_embed"], pos)
    assert converted["position_embedding_grids"] == {"detector.backbone.pos_embed": [32, 54]}

    with torch.no_grad():
        outputs = model([{"image": torch.randint(0, 256, (3, 200, 300), dtype=torch.uint8)}])
    assert len(outputs[0]["instances"]) == 100


@pytest.mark.parametrize("source", ["ours", "hf"])
def test_mid_layer_embeddings_are_resized_too(tmp_path, source, caplog):
    """YOLOS-S's 512x864 position embeddings, from our checkpoint or a transformers folder, into 800x1344."""
    if source == "ours":
        model = build_model("yolos_s", S)
        weights, checkpoint = model.state_dict(), save_ours(model, tmp_path)
    else:
        hf_model = random_huggingface_model(load_config(config_path("yolos_s"), S).model.detector.backbone)
        hf_model.save_pretrained(tmp_path / "hf")
        assert convert_main([str(tmp_path / "hf"), str(tmp_path / "hf.pth"), "--format", "hf"]) == 0
        checkpoint = str(tmp_path / "hf.pth")
        weights = load_weights_file(checkpoint)["model"]
    model = build_model("yolos_s", S_800)
    with caplog.at_level(logging.INFO, logger="yolos_d2.checkpoint"):
        YOLOSCheckpointer(model).load(checkpoint)
    assert caplog.text.count("resized") == 2
    backbone = model.detector.backbone
    expected = bicubic(weights["detector.backbone.pos_embed"], (32, 54), (50, 84))
    assert max_abs_diff(backbone.pos_embed.detach(), expected) <= 1e-6
    mid = weights["detector.backbone.mid_pos_embed"]  # (depth - 1, 1, 1 + 32 * 54 + 100, 384)
    expected = bicubic(mid.squeeze(1), (32, 54), (50, 84), num_det_tokens=100).unsqueeze(1)
    assert backbone.mid_pos_embed.shape == (1, 1, 1 + 50 * 84 + 100, 384)
    assert max_abs_diff(backbone.mid_pos_embed.detach(), expected) <= 1e-6


def test_another_width_still_names_both_variants(tmp_path):
    checkpoint = save_ours(build_model("yolos_ti", TI), tmp_path)
    with pytest.raises(ValueError, match=r"holds a custom ViT \(embed_dim 192, depth 1\) but the model is a custom "
                                         r"ViT \(embed_dim 384, depth 1\)"):
        YOLOSCheckpointer(build_model("yolos_s", ["model.detector.backbone.depth=1"])).load(checkpoint)


def test_another_depth_still_names_the_missing_blocks(tmp_path):
    checkpoint = save_ours(build_model("yolos_ti", TI), tmp_path)
    model = build_model("yolos_ti", [*TI_512, "model.detector.backbone.depth=2"])
    missing = r"missing from the checkpoint \(12 tensors\): detector\.backbone\.blocks\.1\n"
    with pytest.raises(ValueError, match=missing):
        YOLOSCheckpointer(model).load(checkpoint)


def test_another_class_count_reinitialises_the_class_head_and_resizes(tmp_path, caplog):
    checkpoint = save_ours(build_model("yolos_ti", TI), tmp_path)
    model = build_model("yolos_ti", [*TI_512, "model.detector.num_classes=3"])
    with caplog.at_level(logging.INFO):
        YOLOSCheckpointer(model).load(checkpoint)
    assert "class head for 80 classes, the model for 3" in caplog.text
    assert "resized detector.backbone.pos_embed" in caplog.text


def test_without_recorded_grids_another_init_pe_size_does_not_fit(tmp_path):
    path = str(tmp_path / "plain.pth")
    save_checkpoint_atomic({"model": build_model("yolos_ti", TI).state_dict()}, path)
    with pytest.raises(ValueError, match=r"detector\.backbone\.pos_embed: \(1, 4151, 192\) in the checkpoint, "
                                         r"\(1, 1729, 192\) in the model"):
        YOLOSCheckpointer(build_model("yolos_ti", TI_512)).load(path)


def test_a_malformed_grid_record_is_named(tmp_path):
    path = str(tmp_path / "bad.pth")
    state = build_model("yolos_ti", TI).state_dict()
    save_checkpoint_atomic({"model": state, "position_embedding_grids": {"detector.backbone.pos_embed": 50}}, path)
    with pytest.raises(ValueError, match=r"bad\.pth'.*'position_embedding_grids' entry is not a dict"):
        YOLOSCheckpointer(build_model("yolos_ti", TI)).load(path)
