"""Original YOLOS checkpoints ({"model", "args", ...} as its main.py saves them) convert exactly."""
import argparse
import re

import torch

from _helpers import build_model, coco_rows, config_path, max_abs_diff
from benchmarks.huggingface import random_huggingface_model
from yolos_d2.checkpoint import YOLOSCheckpointer
from yolos_d2.config import load_config
from yolos_d2.tools.convert import main as convert_main

_HF_TO_ORIGINAL = [
    (r"^vit\.embeddings\.cls_token$", "backbone.cls_token"),
    (r"^vit\.embeddings\.detection_tokens$", "backbone.det_token"),
    (r"^vit\.embeddings\.position_embeddings$", "backbone.pos_embed"),
    (r"^vit\.embeddings\.patch_embeddings\.projection\.", "backbone.patch_embed.proj."),
    (r"^vit\.encoder\.interpolation\.mid_position_embeddings$", "backbone.mid_pos_embed"),
    (r"^vit\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"backbone.blocks.\1.attn.proj."),
    (r"^vit\.encoder\.layer\.(\d+)\.layernorm_before\.", r"backbone.blocks.\1.norm1."),
    (r"^vit\.encoder\.layer\.(\d+)\.layernorm_after\.", r"backbone.blocks.\1.norm2."),
    (r"^vit\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"backbone.blocks.\1.mlp.fc1."),
    (r"^vit\.encoder\.layer\.(\d+)\.output\.dense\.", r"backbone.blocks.\1.mlp.fc2."),
    (r"^vit\.layernorm\.", "backbone.norm."),
    (r"^class_labels_classifier\.", "class_embed."),
    (r"^bbox_predictor\.", "bbox_embed."),
]


def original_state_dict(hf_model):
    """The state dict the original YOLOS code would hold for the same weights (its key layout)."""
    hf = hf_model.state_dict()
    out = {}
    for key, value in hf.items():
        qkv = re.match(r"^vit\.encoder\.layer\.(\d+)\.attention\.attention\.query\.(weight|bias)$", key)
        if qkv:
            layer, kind = qkv.groups()
            parts = [hf[f"vit.encoder.layer.{layer}.attention.attention.{n}.{kind}"] for n in ("query", "key", "value")]
            out[f"backbone.blocks.{layer}.attn.qkv.{kind}"] = torch.cat(parts)
        for pattern, repl in _HF_TO_ORIGINAL:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
    return out


def test_original_checkpoint_with_args_namespace_matches_reference(tmp_path):
    overrides = ["model.detector.backbone.depth=2"]
    hf_model = random_huggingface_model(load_config(config_path("yolos_s"), overrides).model.detector.backbone)
    src = tmp_path / "yolos_s_original.pth"
    torch.save(
        {
            "model": original_state_dict(hf_model),
            "optimizer": {"state": {}, "param_groups": []},
            "epoch": 149,
            "args": argparse.Namespace(backbone_name="small", init_pe_size=[512, 864], lr=2.5e-5),
        },
        src,
    )
    out = tmp_path / "converted.pth"
    assert convert_main([str(src), str(out), "--format", "yolos", "--config-file", config_path("yolos_s"), *overrides]) == 0
    model = build_model("yolos_s", overrides)
    YOLOSCheckpointer(model).load(str(out))
    images = torch.randn(1, 3, 256, 416)
    with torch.no_grad():
        ours, theirs = model.detector(images), hf_model(pixel_values=images)
    assert max_abs_diff(ours["pred_logits"], theirs.logits[..., torch.tensor(coco_rows())]) <= 1e-4
    assert max_abs_diff(ours["pred_boxes"], theirs.pred_boxes) <= 1e-4


def test_keep_class_ids_keeps_all_92_outputs(tmp_path):
    overrides = ["model.detector.backbone.depth=1"]
    hf_model = random_huggingface_model(load_config(config_path("yolos_ti"), overrides).model.detector.backbone)
    src = tmp_path / "original.pth"
    torch.save({"model": original_state_dict(hf_model)}, src)
    out = tmp_path / "converted.pth"
    assert convert_main([str(src), str(out), "--format", "yolos", "--keep-class-ids",
                         "--config-file", config_path("yolos_ti"), *overrides, "model.detector.num_classes=91"]) == 0
    model = build_model("yolos_ti", [*overrides, "model.detector.num_classes=91"])
    YOLOSCheckpointer(model).load(str(out))
    images = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        assert max_abs_diff(model.detector(images)["pred_logits"], hf_model(pixel_values=images).logits) <= 1e-4
