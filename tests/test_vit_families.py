"""
ViT releases of other families initialise the backbone: each built with random weights through
timm or written in its release's key names, saved in the release's format, converted with
yolos-convert and compared with timm's own forward pass.
"""
import logging

import numpy as np
import pytest
import timm
import torch
from timm.models.vision_transformer import _load_weights as timm_load_npz

from conftest import build_model, config_path, max_abs_diff
from yolos_d2.checkpoint import YOLOSCheckpointer, load_weights_file
from yolos_d2.tools.convert import main as convert_main

# The sequence at 224 without [DET] tokens is exactly the ViT's: [CLS], then the patches. A config
# refuses a model without [DET] tokens, so the file is converted for one with them (which a ViT
# release lacks anyway) and loaded into one without.
AT_224 = ["model.detector.backbone.init_pe_size=[224,224]"]
NO_DET_TOKENS = "model.detector.backbone.num_det_tokens=0"


def vit_overrides(vit, depth=2):
    """Overrides of configs/yolos_ti.py (no mid-layer position embeddings) building ``vit``'s shape."""
    block = vit.blocks[0]
    return [
        f"model.detector.backbone.embed_dim={vit.embed_dim}",
        f"model.detector.backbone.num_heads={block.attn.num_heads}",
        f"model.detector.backbone.depth={depth}",
        f"model.detector.backbone.patch_size={vit.patch_embed.patch_size[0]}",
    ]


def randomise(vit, seed=0):
    """Every parameter of ``vit`` drawn (std 0.1), so that the layer scale and position embeddings count."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in vit.parameters():
            param.normal_(std=0.1)
    return vit.eval()


def convert_and_load(src, fmt, overrides, out, det_tokens=True):
    """Convert ``src`` for configs/yolos_ti.py with ``overrides``; load it into that model, without [DET] tokens if asked."""
    config = ["--config-file", config_path("yolos_ti"), *overrides]
    assert convert_main([str(src), str(out), "--format", fmt, *config]) == 0
    model = build_model("yolos_ti", overrides if det_tokens else [*overrides, NO_DET_TOKENS])
    YOLOSCheckpointer(model).load(str(out))
    return model, load_weights_file(str(out))["model"]


def assert_only_yolos_parts_new(model, converted):
    """The converted state lacks the [DET] tokens, their position embeddings and the heads, nothing else."""
    new = {"detector.backbone.det_token", "detector.backbone.det_pos_embed"}
    new |= {k for k in model.state_dict() if k.startswith(("detector.class_embed.", "detector.bbox_embed."))}
    assert set(model.state_dict()) - set(converted) == new
    assert set(converted) <= set(model.state_dict())


def assert_same_tokens(model, vit, size=224):
    torch.manual_seed(1)
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours, theirs = model.detector.backbone.forward_features(images), vit.forward_features(images)
    assert ours.shape == theirs.shape
    assert max_abs_diff(ours, theirs) <= 1e-5


def deit3_release(vit):
    """DeiT III's release: {"model": ...} in timm's names but gamma_1/gamma_2 for the layer scale."""
    state = {k.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2"): v for k, v in vit.state_dict().items()}
    return {"model": state}


def mocov3_release(vit):
    """MoCo v3's training checkpoint: base and momentum encoders (with projection heads) and predictor."""
    encoder = {k: v for k, v in vit.state_dict().items() if not k.startswith("head.")}
    projector = {"head.0.weight": torch.randn(64, vit.embed_dim), "head.1.running_mean": torch.zeros(64),
                 "head.1.num_batches_tracked": torch.tensor(0)}
    state = {f"module.{part}.{k}": v for part in ("base_encoder", "momentum_encoder")
             for k, v in {**encoder, **projector}.items()}
    state["module.predictor.0.weight"] = torch.randn(64, 64)
    return {"epoch": 300, "arch": "vit_small", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


def mae_release(vit):
    """MAE's pre-trained encoder: {"model": ...} in timm's names, no classification head."""
    return {"model": {k: v for k, v in vit.state_dict().items() if not k.startswith("head.")}}


def dino_release(vit):
    """DINO's backbone weights: a plain state dict in timm's names, no head."""
    return {k: v for k, v in vit.state_dict().items() if not k.startswith("head.")}


# (--format, timm model and arguments, the release's content)
TORCH_RELEASES = [
    ("deit3", "deit3_small_patch16_224", {}, deit3_release),
    ("mae", "vit_base_patch16_224", {"embed_dim": 192, "num_heads": 3}, mae_release),
    # MoCo v3's ViT-S has 12 heads where DeiT-S has 6.
    ("mocov3", "vit_small_patch16_224", {"num_heads": 12}, mocov3_release),
    # DINO ViT-S/8: patches of 8 pixels.
    ("dino", "vit_small_patch8_224", {}, dino_release),
]


@pytest.mark.parametrize("fmt, name, kwargs, release", TORCH_RELEASES, ids=[r[0] for r in TORCH_RELEASES])
def test_release_gives_timm_tokens(tmp_path, fmt, name, kwargs, release):
    vit = randomise(timm.create_model(name, pretrained=False, depth=2, **kwargs))
    torch.save(release(vit), tmp_path / "release.pth")
    overrides = [*vit_overrides(vit), *AT_224]
    model, converted = convert_and_load(tmp_path / "release.pth", fmt, overrides, tmp_path / "out.pth", det_tokens=False)
    assert_only_yolos_parts_new(model, converted)
    assert_same_tokens(model, vit)


def jax_vit_arrays(dim, depth, heads, patch_size, grid, num_classes, seed=0):
    """Random arrays named and shaped as in Google's vit_jax .npz releases (AugReg's)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "cls": (1, 1, dim),
        "embedding/kernel": (patch_size, patch_size, 3, dim),
        "embedding/bias": (dim,),
        "Transformer/posembed_input/pos_embedding": (1, 1 + grid * grid, dim),
        "Transformer/encoder_norm/scale": (dim,),
        "Transformer/encoder_norm/bias": (dim,),
        "head/kernel": (dim, num_classes),
        "head/bias": (num_classes,),
    }
    for i in range(depth):
        block = f"Transformer/encoderblock_{i}/"
        for norm in ("LayerNorm_0", "LayerNorm_2"):
            shapes.update({f"{block}{norm}/scale": (dim,), f"{block}{norm}/bias": (dim,)})
        for part in ("query", "key", "value"):
            attention = f"{block}MultiHeadDotProductAttention_1/{part}/"
            shapes.update({attention + "kernel": (dim, heads, dim // heads), attention + "bias": (heads, dim // heads)})
        shapes.update({
            f"{block}MultiHeadDotProductAttention_1/out/kernel": (heads, dim // heads, dim),
            f"{block}MultiHeadDotProductAttention_1/out/bias": (dim,),
            f"{block}MlpBlock_3/Dense_0/kernel": (dim, 4 * dim),
            f"{block}MlpBlock_3/Dense_0/bias": (4 * dim,),
            f"{block}MlpBlock_3/Dense_1/kernel": (4 * dim, dim),
            f"{block}MlpBlock_3/Dense_1/bias": (dim,),
        })
    return {name: rng.normal(scale=0.1, size=shape).astype(np.float32) for name, shape in shapes.items()}


def test_augreg_npz_gives_the_tokens_timm_reads_from_it(tmp_path):
    """An AugReg ViT-B/32 shape (narrowed): timm's own npz reader is the reference."""
    arrays = jax_vit_arrays(dim=192, depth=2, heads=3, patch_size=32, grid=7, num_classes=10)
    np.savez(tmp_path / "augreg.npz", **arrays)
    vit = timm.create_model("vit_base_patch32_224", pretrained=False, embed_dim=192, depth=2, num_heads=3,
                            num_classes=10)
    timm_load_npz(vit, str(tmp_path / "augreg.npz"))
    model, converted = convert_and_load(
        tmp_path / "augreg.npz", "augreg", [*vit_overrides(vit.eval()), *AT_224], tmp_path / "out.pth", det_tokens=False
    )
    assert_only_yolos_parts_new(model, converted)
    assert_same_tokens(model, vit)


def test_patch_32_model_detects_at_another_size():
    """
    The whole detector at patch size 32: images padded to whole 32-pixel patches, the position
    embedding resized to the 32-pixel grid of each input.
    """
    model = build_model("yolos_ti", ["model.detector.backbone.patch_size=32", "model.detector.backbone.depth=1",
                                     "model.detector.backbone.init_pe_size=[512,864]"])
    assert model.detector.backbone.init_grid == (16, 27) and model.size_divisibility == 32
    image = torch.randint(0, 256, (3, 300, 470), dtype=torch.uint8)
    with torch.no_grad():
        (output,) = model([{"image": image}])
        padded = model.preprocess_image([{"image": image}]).tensor
        tokens = model.detector.backbone.forward_features(padded)
    assert len(output["instances"]) == 100
    assert padded.shape[-2:] == (320, 480)
    assert tokens.shape == (1, 1 + 10 * 15 + 100, 192)


def test_layer_scale_outside_deit3_is_refused_naming_it(tmp_path, caplog):
    vit = timm.create_model("deit3_small_patch16_224", pretrained=False, depth=2)
    torch.save(deit3_release(vit), tmp_path / "deit3.pth")
    assert convert_main([str(tmp_path / "deit3.pth"), str(tmp_path / "out.pth"), "--format", "deit",
                         "--config-file", config_path("yolos_s")]) == 1
    assert "holds parts that YOLOS's ViT does not have" in caplog.text
    assert "layer scale (blocks.0.gamma_1, blocks.0.gamma_2, blocks.1.gamma_1, blocks.1.gamma_2)" in caplog.text
    assert "--format deit3" in caplog.text
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.parametrize(
    "name, kwargs, what",
    [
        ("vit_small_patch16_224", {"reg_tokens": 4, "no_embed_class": True}, "register tokens (reg_token)"),
        ("beit_base_patch16_224", {"embed_dim": 192, "num_heads": 3, "use_abs_pos_emb": True},
         "relative position bias (blocks.0.attn.relative_position_bias_table)"),
    ],
    ids=["registers", "relative-position-bias"],
)
def test_parts_the_backbone_lacks_are_named(tmp_path, caplog, name, kwargs, what):
    vit = timm.create_model(name, pretrained=False, depth=1, **kwargs)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    assert convert_main([str(tmp_path / "vit.pth"), str(tmp_path / "out.pth"), "--format", "dino",
                         "--config-file", config_path("yolos_s")]) == 1
    assert what in caplog.text


def test_unknown_parts_are_named(tmp_path, caplog):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, pre_norm=True)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    assert convert_main([str(tmp_path / "vit.pth"), str(tmp_path / "out.pth"), "--format", "deit",
                         "--config-file", config_path("yolos_ti")]) == 1
    assert "holds tensors of no part of a ViT that yolos_d2 knows: norm_pre.bias, norm_pre.weight" in caplog.text


def test_mocov3_file_without_its_state_dict_is_named(tmp_path, caplog):
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 192)}}, tmp_path / "moco.pth")
    assert convert_main([str(tmp_path / "moco.pth"), str(tmp_path / "out.pth"), "--format", "mocov3",
                         "--config-file", config_path("yolos_ti")]) == 1
    assert "is not a MoCo v3 checkpoint: it has no 'state_dict' entry" in caplog.text


def test_left_out_keys_are_logged(tmp_path, caplog):
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, depth=1, num_heads=12)
    torch.save(mocov3_release(vit), tmp_path / "moco.pth")
    with caplog.at_level(logging.INFO, logger="yolos_d2"):
        assert convert_main([str(tmp_path / "moco.pth"), str(tmp_path / "out.pth"), "--format", "mocov3",
                             "--config-file", config_path("yolos_s"), "model.detector.backbone.num_heads=12",
                             "model.detector.backbone.depth=1"]) == 0
    assert "module.momentum_encoder.cls_token" in caplog.text and "module.predictor.0.weight" in caplog.text
    assert "head.0.weight" in caplog.text
