"""DeiT/ViT ImageNet checkpoints: exact loading, position-embedding resizing, distilled DeiT-B."""
import logging

import timm
import torch
import torch.nn.functional as F

from conftest import build_model, config_path, max_abs_diff
from yolos_d2.checkpoint import YOLOSCheckpointer, load_weights_file
from yolos_d2.tools.convert import main as convert_main


def _save_deit_release(model, path):
    torch.save({"model": model.state_dict()}, path)


def test_tiny_backbone_reproduces_timm_forward(tmp_path):
    torch.manual_seed(0)
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    _save_deit_release(deit, tmp_path / "deit_tiny.pth")
    # Position embedding kept at 224 and, in the model loading it, no [DET] tokens (a config refuses
    # none, and a DeiT release has none): the sequence is exactly DeiT's.
    overrides = ["model.detector.backbone.init_pe_size=[224,224]"]
    out = tmp_path / "converted.pth"
    assert convert_main([str(tmp_path / "deit_tiny.pth"), str(out), "--format", "deit",
                         "--config-file", config_path("yolos_ti"), *overrides]) == 0
    model = build_model("yolos_ti", [*overrides, "model.detector.backbone.num_det_tokens=0"])
    YOLOSCheckpointer(model).load(str(out))
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = model.detector.backbone.forward_features(images)
        theirs = deit.forward_features(images)
    assert ours.shape == theirs.shape == (2, 197, 192)
    assert max_abs_diff(ours, theirs) <= 1e-5


def test_plain_timm_state_dict_is_resized_to_init_pe_size(tmp_path):
    torch.manual_seed(0)
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    torch.save(deit.state_dict(), tmp_path / "timm.pth")
    out = tmp_path / "converted.pth"
    assert convert_main([str(tmp_path / "timm.pth"), str(out), "--format", "deit",
                         "--config-file", config_path("yolos_ti")]) == 0
    state = load_weights_file(str(out))["model"]
    pos = state["detector.backbone.pos_embed"]
    assert pos.shape == (1, 1 + 50 * 83, 192)  # init_pe_size 800x1328 -> 50x83 patches
    grid = deit.pos_embed[:, 1:].detach().reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(50, 83), mode="bicubic", align_corners=False)
    assert torch.equal(pos[:, 0], deit.pos_embed[:, 0].detach())
    assert max_abs_diff(pos[:, 1:], expected.flatten(2).transpose(1, 2)) <= 1e-6


def test_distilled_deit_base_gives_cls_the_distillation_position(tmp_path, caplog):
    torch.manual_seed(0)
    # A narrow, shallow DeiT-B distilled 384: same token layout, small enough for a test.
    deit = timm.models.deit.VisionTransformerDistilled(img_size=384, patch_size=16, embed_dim=48, depth=1, num_heads=3)
    _save_deit_release(deit, tmp_path / "deit_b_distilled.pth")
    overrides = ["model.detector.backbone.embed_dim=48", "model.detector.backbone.depth=1",
                 "model.detector.backbone.num_heads=3"]
    out = tmp_path / "converted.pth"
    with caplog.at_level(logging.INFO):
        assert convert_main([str(tmp_path / "deit_b_distilled.pth"), str(out), "--format", "deit",
                             "--config-file", config_path("yolos_b"), *overrides]) == 0
    state = load_weights_file(str(out))["model"]
    src_pos = deit.pos_embed.detach()  # [CLS], distillation token, 24x24 patches
    pos = state["detector.backbone.pos_embed"]
    assert pos.shape == (1, 1 + 50 * 84, 48)
    assert torch.equal(pos[:, 0], src_pos[:, 1])
    grid = src_pos[:, 2:].reshape(1, 24, 24, 48).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(50, 84), mode="bicubic", align_corners=False)
    assert max_abs_diff(pos[:, 1:], expected.flatten(2).transpose(1, 2)) <= 1e-6
    assert torch.equal(state["detector.backbone.cls_token"], deit.cls_token.detach())
    assert not any("dist" in k or "head" in k for k in state)
    assert "dist_token" in caplog.text and "head_dist.weight" in caplog.text

    # Loading it reports the new parameters by name.
    model = build_model("yolos_b", overrides)
    logger = logging.getLogger("fvcore.common.checkpoint")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        YOLOSCheckpointer(model).load(str(out))
    for new in ["det_token", "det_pos_embed", "mid_pos_embed", "class_embed", "bbox_embed"]:
        assert new in caplog.text
