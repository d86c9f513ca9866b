"""Original YOLOS checkpoints ({"model", "args", ...} as its main.py saves them) convert exactly."""
import argparse

import torch

from conftest import build_model, config_path, max_abs_diff, original_state_dict
from yolos_d2.checkpoint.class_head import coco_class_head_rows
from benchmarks.huggingface import random_huggingface_model
from yolos_d2.checkpoint import YOLOSCheckpointer
from yolos_d2.config import load_config
from yolos_d2.tools.convert import main as convert_main

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
    assert max_abs_diff(ours["pred_logits"], theirs.logits[..., torch.tensor(coco_class_head_rows())]) <= 1e-4
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
